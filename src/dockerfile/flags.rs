//! Validation of an instruction's `--flag` words (BuildKit's `BFlags`):
//! each instruction declares its flags; unknown, repeated, value-less and
//! non-boolean values are errors, with a "did you mean" for near misses.

use super::source::Span;
use super::syntax::Flag;

/// How a flag takes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `--link` or `--link=true|false`.
    Bool,
    /// `--from=x`, once.
    String,
    /// `--mount=...`, any number of times.
    Repeated,
}

/// A flag's parsed value, with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The text after `=` (`"true"` for a bare boolean flag).
    pub value: String,
    /// The flag word.
    pub span: Span,
}

/// The flags one instruction was given.
#[derive(Debug, Default)]
pub struct Parsed {
    values: Vec<(&'static str, Value)>,
}

impl Parsed {
    /// The value of a single-valued flag.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// A boolean flag: false when absent.
    pub fn bool(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v.value == "true")
    }

    /// A string flag's text.
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| v.value.clone())
    }

    /// Every value of a repeatable flag, in order.
    pub fn all(&self, name: &str) -> Vec<&Value> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .collect()
    }
}

/// A flag error: the message, the flag word's span and maybe a hint.
pub type FlagError = (String, Span, Option<String>);

/// Checks `flags` against the instruction's `allowed` list.
pub fn parse(
    instruction: &str,
    flags: &[Flag],
    allowed: &[(&'static str, Kind)],
) -> Result<Parsed, Vec<FlagError>> {
    let mut parsed = Parsed::default();
    let mut errors = Vec::new();
    for flag in flags {
        let body = flag.text.strip_prefix("--").unwrap_or(&flag.text);
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(&(known, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            let hint = match suggest(name, &names) {
                Some(s) => Some(format!("did you mean --{s}?")),
                None if names.is_empty() => Some(format!("{instruction} takes no flags")),
                None => Some(format!(
                    "{instruction} accepts {}",
                    names
                        .iter()
                        .map(|n| format!("--{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
            errors.push((format!("unknown flag: --{name}"), flag.span, hint));
            continue;
        };
        if kind != Kind::Repeated && parsed.get(known).is_some() {
            errors.push((
                format!("duplicate flag specified: --{name}"),
                flag.span,
                Some("give it once".into()),
            ));
            continue;
        }
        let value = match (kind, value) {
            (Kind::Bool, None) => "true".to_string(),
            (Kind::Bool, Some("")) | (Kind::String | Kind::Repeated, None) => {
                errors.push((
                    format!("missing a value on flag: --{name}"),
                    flag.span,
                    Some(format!("write it as --{name}=VALUE")),
                ));
                continue;
            }
            (Kind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                "true" => "true".into(),
                "false" => "false".into(),
                _ => {
                    errors.push((
                        format!("expecting boolean value for flag --{name}, not: {v}"),
                        flag.span,
                        Some("use true or false".into()),
                    ));
                    continue;
                }
            },
            (_, Some(v)) => v.to_string(),
        };
        parsed.values.push((
            known,
            Value {
                value,
                span: flag.span,
            },
        ));
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// The candidate closest to `word` (case-insensitive), if it is close enough
/// to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // Keywords and flag names are short; a long word is no typo of one.
    if word.len() > 32 {
        return None;
    }
    let word = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (distance(&word, &c.to_ascii_lowercase()), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance where swapping two neighbours costs one edit (optimal string
/// alignment), so `form` is one typo away from `from`.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(text: &str) -> Flag {
        Flag {
            text: text.into(),
            raw: text.into(),
            span: Span::new(0, text.len()),
        }
    }

    const COPY: [(&str, Kind); 3] = [
        ("from", Kind::String),
        ("link", Kind::Bool),
        ("exclude", Kind::Repeated),
    ];

    #[test]
    fn parses_each_kind() {
        let p = parse(
            "COPY",
            &[
                flag("--from=a"),
                flag("--link"),
                flag("--exclude=x"),
                flag("--exclude=y"),
            ],
            &COPY,
        )
        .unwrap();
        assert_eq!(p.string("from").as_deref(), Some("a"));
        assert!(p.bool("link"));
        assert_eq!(
            p.all("exclude")
                .iter()
                .map(|v| v.value.as_str())
                .collect::<Vec<_>>(),
            ["x", "y"]
        );
        assert!(
            !parse("COPY", &[flag("--link=FALSE")], &COPY)
                .unwrap()
                .bool("link")
        );
    }

    #[test]
    fn rejects_bad_flags() {
        let msgs = |f: &[&str]| -> Vec<(String, Option<String>)> {
            let flags: Vec<Flag> = f.iter().map(|t| flag(t)).collect();
            parse("COPY", &flags, &COPY)
                .unwrap_err()
                .into_iter()
                .map(|(m, _, h)| (m, h))
                .collect()
        };
        assert_eq!(
            msgs(&["--form=a"]),
            [(
                "unknown flag: --form".into(),
                Some("did you mean --from?".into())
            )]
        );
        assert_eq!(
            msgs(&["--from=a", "--from=b"])[0].0,
            "duplicate flag specified: --from"
        );
        assert_eq!(msgs(&["--from"])[0].0, "missing a value on flag: --from");
        assert_eq!(msgs(&["--link="])[0].0, "missing a value on flag: --link");
        assert_eq!(
            msgs(&["--link=yes"])[0].0,
            "expecting boolean value for flag --link, not: yes"
        );
        assert_eq!(
            msgs(&["--zzz"])[0].1.as_deref(),
            Some("COPY accepts --from, --link, --exclude")
        );
    }

    #[test]
    fn suggests_near_misses_only() {
        let names = ["from", "run", "copy", "healthcheck"];
        assert_eq!(suggest("RUNN", &names), Some("run"));
        assert_eq!(suggest("helthcheck", &names), Some("healthcheck"));
        assert_eq!(suggest("xyz", &names), None);
    }
}
