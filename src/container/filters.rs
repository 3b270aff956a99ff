//! Docker's container filters (`ps --filter`, `GET /containers/json`'s
//! `filters`), one meaning for the CLI and the API: values of one key are
//! alternatives, except `label`, whose filters must all hold; different
//! keys all apply.

use super::Container;
use super::state::Status;
use std::collections::BTreeMap;

/// The filter keys there are.
pub const KEYS: [&str; 6] = ["status", "name", "id", "ancestor", "label", "health"];

/// Filters by key: `{"status": ["running", "exited"], "label": ["a=1"]}`.
pub type Filters = BTreeMap<String, Vec<String>>;

/// `KEY=VALUE` pairs as [`Filters`]; an unknown key or a pair without `=`
/// is an error in docker's words.
pub fn parse(pairs: &[String]) -> Result<Filters, String> {
    let mut out = Filters::new();
    for f in pairs {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| format!("bad format of filter (expected name=value): {f}"))?;
        if !KEYS.contains(&k) {
            return Err(format!("invalid filter '{k}'"));
        }
        out.entry(k.to_string()).or_default().push(v.to_string());
    }
    Ok(out)
}

/// True when `c` passes `filters`.
pub fn matches(c: &Container, filters: &Filters) -> bool {
    let st = c.state();
    let r = &c.record;
    let label = |v: &String| match v.split_once('=') {
        Some((k, val)) => r.labels.iter().any(|(a, b)| a == k && b == val),
        None => r.labels.iter().any(|(a, _)| a == v),
    };
    filters.iter().all(|(k, vs)| {
        if k == "label" {
            return vs.iter().all(label);
        }
        vs.iter().any(|v| match k.as_str() {
            "status" => st.docker_state() == v,
            "name" => r.name.contains(v.trim_start_matches('/')),
            "id" => r.id.starts_with(v.as_str()),
            "ancestor" => r.image == *v || r.image_id.contains(v.as_str()),
            "health" => match &st.health {
                Some(h) if st.status == Status::Running => h.status == *v,
                _ => v == "none",
            },
            _ => false,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_grouped_and_checked() {
        let f = parse(&[
            "label=a=1".into(),
            "label=b".into(),
            "status=running".into(),
        ])
        .unwrap();
        assert_eq!(f["label"], ["a=1", "b"]);
        assert_eq!(f["status"], ["running"]);
        assert_eq!(
            parse(&["colour=red".into()]).unwrap_err(),
            "invalid filter 'colour'"
        );
        assert!(
            parse(&["status".into()])
                .unwrap_err()
                .starts_with("bad format of filter")
        );
    }
}
