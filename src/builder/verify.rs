//! `kiln build --verify-repro`: the same inputs built again in a scratch
//! store with no cache, and the two images compared. When they differ,
//! the first difference is named: the layer and the step that made it,
//! the path, and what about it (content, type, mode, owner, mtime,
//! xattrs, link target, order), or else the config's first field that
//! differs.

use super::{BuildError, Options, Pull, build};
use crate::dockerfile::source::Source;
use crate::image::{Image, ImageError, manifest_digest};
use crate::progress::Progress;
use crate::store::Store;
use sha2::{Digest as _, Sha256};
use std::io::Read;

/// What the second build showed.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The same image (image id: the same layers' diffIDs and config).
    Same,
    /// Another image.
    Differs {
        /// The second build's image id.
        again: String,
        /// The first difference, a line each: where, then what.
        first: Vec<String>,
    },
}

/// Builds `opts` again in a scratch store (under `store`'s tmp/, holding
/// the same images but none of its cache) with no cache, and compares the
/// result with `built`, the first build's image.
pub fn verify(
    store: &Store,
    source: &Source,
    opts: &Options,
    progress: &Progress,
    built: &Image,
) -> Result<Verdict, BuildError> {
    let root = store.temp_path("repro");
    let result = (|| {
        let scratch = Store::open(&root)?;
        store.share_images_with(&scratch)?;
        progress.note("verifying: the same inputs built again in a scratch store with no cache");
        let again_opts = Options {
            no_cache: true,
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            tags: Vec::new(),
            // The first build fetched what --pull asked for: the second
            // uses the same bases.
            pull: match opts.pull {
                Pull::Always => Pull::Missing,
                p => p,
            },
            warm_check: None,
            explain: false,
            ..opts.clone()
        };
        let (again, _) = build(&scratch, source, &again_opts, progress)?;
        // The image id (the config's digest) names the content: layers
        // that came from a cache compressed make another manifest of the
        // same image.
        if again.id == built.id {
            return Ok(Verdict::Same);
        }
        Ok(Verdict::Differs {
            again: again.id.to_string(),
            first: first_difference((store, built), (&scratch, &again))?,
        })
    })();
    let _ = crate::sandbox::fs::remove_dir_all(&root);
    result
}

/// The first difference between two images: the first layer whose diffID
/// differs (the step that made it, then its first differing entry), else
/// the config's first differing field, else the manifest's.
fn first_difference(a: (&Store, &Image), b: (&Store, &Image)) -> Result<Vec<String>, BuildError> {
    let (la, lb) = (a.1.layers(), b.1.layers());
    let steps: Vec<String> =
        a.1.config
            .history
            .iter()
            .filter(|h| h.empty_layer != Some(true))
            .map(|h| h.created_by.clone().unwrap_or_default())
            .collect();
    for i in 0..la.len().max(lb.len()) {
        let of = |n: usize| format!("layer {} of {n}", i + 1);
        let made_by = steps
            .get(i)
            .map(|s| format!(", made by {s}"))
            .unwrap_or_default();
        match (la.get(i), lb.get(i)) {
            (Some(x), Some(y)) if x.1 == y.1 => continue,
            (Some(x), Some(y)) => {
                let mut lines = vec![format!("first difference: {}{made_by}", of(la.len()))];
                lines.extend(layer_difference((a.0, &x.0), (b.0, &y.0))?);
                return Ok(lines);
            }
            (Some(_), None) => {
                return Ok(vec![format!(
                    "first difference: {}{made_by} is in the first build only",
                    of(la.len())
                )]);
            }
            (None, _) => {
                return Ok(vec![format!(
                    "first difference: the second build has a layer {} more",
                    lb.len() - la.len()
                )]);
            }
        }
    }
    let (ca, cb) = (
        serde_json::to_value(&a.1.config).unwrap_or_default(),
        serde_json::to_value(&b.1.config).unwrap_or_default(),
    );
    if let Some(line) = json_difference("", &ca, &cb) {
        return Ok(vec![
            "first difference: the config".into(),
            format!("  {line}"),
        ]);
    }
    let (ma, mb) = (
        serde_json::to_value(&a.1.manifest).unwrap_or_default(),
        serde_json::to_value(&b.1.manifest).unwrap_or_default(),
    );
    let line = json_difference("", &ma, &mb).unwrap_or_else(|| "the manifests' bytes".into());
    Ok(vec![
        "first difference: the manifest".into(),
        format!("  {line}"),
    ])
}

/// The first field (depth first, keys in order) where `a` and `b` differ,
/// as `path differs (a, then b)`.
fn json_difference(path: &str, a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let at = |key: &str| match path {
        "" => key.to_string(),
        p => format!("{p}.{key}"),
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let null = Value::Null;
                json_difference(&at(k), x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null))
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| json_difference(&format!("{path}[{i}]"), p, q)),
        _ if a == b => None,
        _ => Some(format!("{path} differs ({a}, then {b})")),
    }
}

/// What one tar entry is, as far as a layer's reproducibility goes.
struct Entry {
    path: String,
    kind: u8,
    mode: u32,
    owner: (u64, u64),
    mtime: u64,
    link: Option<String>,
    xattrs: Vec<(String, Vec<u8>)>,
    content: String,
}

/// The first entry of two layers that differs, and how.
fn layer_difference(
    a: (&Store, &oci_spec::image::Descriptor),
    b: (&Store, &oci_spec::image::Descriptor),
) -> Result<Vec<String>, BuildError> {
    let open = |(store, d): (&Store, &oci_spec::image::Descriptor)| -> Result<_, BuildError> {
        let blob = store.open_blob(&manifest_digest(d)?)?;
        let (_, plain) = crate::layer::decompress(blob)
            .map_err(|e| ImageError::BadArchive(format!("reading a layer: {e}")))?;
        Ok(tar::Archive::new(plain))
    };
    let (mut ta, mut tb) = (open(a)?, open(b)?);
    let bad = |e: std::io::Error| ImageError::BadArchive(format!("reading a layer: {e}"));
    let (mut ea, mut eb) = (ta.entries().map_err(bad)?, tb.entries().map_err(bad)?);
    for n in 1.. {
        let (x, y) = (ea.next(), eb.next());
        let (x, y) = match (x, y) {
            (None, None) => break,
            (Some(x), None) => {
                let x = describe(x.map_err(bad)?).map_err(bad)?;
                return Ok(vec![format!("  /{}: in the first build only", x.path)]);
            }
            (None, Some(y)) => {
                let y = describe(y.map_err(bad)?).map_err(bad)?;
                return Ok(vec![format!("  /{}: in the second build only", y.path)]);
            }
            (Some(x), Some(y)) => (
                describe(x.map_err(bad)?).map_err(bad)?,
                describe(y.map_err(bad)?).map_err(bad)?,
            ),
        };
        if x.path != y.path {
            return Ok(vec![format!(
                "  entry {n} is /{} in the first build and /{} in the second (a file added, removed, or out of order)",
                x.path, y.path
            )]);
        }
        let mut what = Vec::new();
        let mut differs = |name: &str, p: String, q: String| {
            if p != q {
                what.push(format!("  /{}: {name} differs ({p}, then {q})", x.path));
            }
        };
        differs(
            "type",
            (x.kind as char).to_string(),
            (y.kind as char).to_string(),
        );
        differs("content", x.content.clone(), y.content.clone());
        differs("mode", format!("{:o}", x.mode), format!("{:o}", y.mode));
        differs(
            "owner",
            format!("{}:{}", x.owner.0, x.owner.1),
            format!("{}:{}", y.owner.0, y.owner.1),
        );
        differs("mtime", x.mtime.to_string(), y.mtime.to_string());
        differs(
            "link target",
            x.link.clone().unwrap_or_default(),
            y.link.clone().unwrap_or_default(),
        );
        let names = |e: &Entry| {
            e.xattrs
                .iter()
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        differs("xattrs", names(&x), names(&y));
        if !what.is_empty() {
            if let Some(hint) = culprit(&x.path) {
                what.push(format!("hint: {hint}"));
            }
            return Ok(what);
        }
    }
    // The same entries: the tars differ in their bytes only (padding, the
    // header format).
    Ok(vec!["  the same entries, in other tar bytes".into()])
}

/// What is known to differ from build to build at `path`, and the cure.
fn culprit(path: &str) -> Option<&'static str> {
    let path = path.trim_start_matches("./");
    if path.starts_with("var/cache/apt/") || path.starts_with("var/log/") {
        Some(
            "apt's binary caches and the package tools' logs are written anew by every run: \
             remove /var/cache/apt/*.bin, /var/log/apt and /var/log/dpkg.log in the same RUN",
        )
    } else if path.starts_with("var/cache/ldconfig/") {
        Some(
            "ldconfig's aux-cache records times: remove /var/cache/ldconfig/aux-cache in the same RUN",
        )
    } else if path.contains("__pycache__/") || path.ends_with(".pyc") {
        Some(
            "Python's bytecode records source times: set SOURCE_DATE_EPOCH for the RUN (ARG SOURCE_DATE_EPOCH) or PYTHONDONTWRITEBYTECODE=1",
        )
    } else {
        None
    }
}

/// An entry's metadata, and the sha256 of its content.
fn describe<R: Read>(mut e: tar::Entry<'_, R>) -> std::io::Result<Entry> {
    let h = e.header().clone();
    let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
    let link = e
        .link_name_bytes()
        .map(|l| String::from_utf8_lossy(&l).into_owned());
    let mut xattrs = Vec::new();
    if let Some(exts) = e.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    let mut hasher = Sha256::new();
    std::io::copy(&mut e, &mut hasher)?;
    Ok(Entry {
        path,
        kind: h.entry_type().as_byte(),
        mode: h.mode()?,
        owner: (h.uid()?, h.gid()?),
        mtime: h.mtime()?,
        link,
        xattrs,
        content: format!("sha256:{:x}", hasher.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_culprits_get_a_hint() {
        assert!(
            culprit("var/cache/apt/pkgcache.bin")
                .unwrap()
                .contains("/var/cache/apt/*.bin")
        );
        assert!(culprit("var/log/dpkg.log").is_some());
        assert!(culprit("usr/lib/python3/x/__pycache__/a.cpython-311.pyc").is_some());
        assert_eq!(culprit("etc/hostname"), None);
    }

    #[test]
    fn the_first_differing_json_field_is_named() {
        let a = serde_json::json!({"config": {"Env": ["A=1"]}, "created": "x", "history": [{"c": 1}, {"c": 2}]});
        let b = serde_json::json!({"config": {"Env": ["A=1"]}, "created": "y", "history": [{"c": 1}, {"c": 3}]});
        assert_eq!(
            json_difference("", &a, &b).unwrap(),
            r#"created differs ("x", then "y")"#
        );
        let b = serde_json::json!({"config": {"Env": ["A=1"]}, "created": "x", "history": [{"c": 1}, {"c": 3}]});
        assert_eq!(
            json_difference("", &a, &b).unwrap(),
            "history[1].c differs (2, then 3)"
        );
        assert_eq!(json_difference("", &a, &a), None);
    }
}
