//! Why a step missed the cache. A step's key is a hash of named inputs
//! (the step before it, the command, the environment, each source's
//! content...); the inputs of every key a build made are kept beside the
//! step records, with the key each step (the same Dockerfile line of the
//! same context) had last time. A miss is explained by the first input
//! that differs from that last record: the parent step, the instruction,
//! an argument, or a file with its path.

use super::hash;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

/// What a step's cache key is made of, in order, each part named.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyInputs {
    /// Parts hashed together; each group after the first is hashed with
    /// the key of the groups before it (how keys have always been made,
    /// so keys stay what they were).
    groups: Vec<Vec<(String, String)>>,
    /// Inputs that only explain (a source tree's files, by path): the key
    /// holds them through a digest of the whole tree.
    detail: Vec<(String, String)>,
}

impl KeyInputs {
    /// Inputs made of `parts` (name, value).
    pub(super) fn new(parts: Vec<(&str, String)>) -> KeyInputs {
        KeyInputs::default().then(parts)
    }

    /// Adds a group hashed with the key so far.
    pub(super) fn then(mut self, parts: Vec<(&str, String)>) -> KeyInputs {
        self.groups
            .push(parts.into_iter().map(|(n, v)| (n.to_string(), v)).collect());
        self
    }

    /// Adds the config steps since the last layer step (`build arg V`,
    /// `instruction before it`): the parent's key holds them; a miss names
    /// them before the parent.
    pub(super) fn explained_by(mut self, since_layer: &[(String, String)]) -> KeyInputs {
        // Several instructions: each its own input, by its place.
        let mut n = 0;
        for (name, value) in since_layer {
            let name = match name.as_str() {
                "instruction before it" => {
                    n += 1;
                    format!("instruction before it {n}")
                }
                _ => name.clone(),
            };
            self.detail.push((name, value.clone()));
        }
        self
    }

    /// Adds an input that explains but is not hashed again.
    pub(super) fn detail(&mut self, name: String, value: String) {
        self.detail.push((name, value));
    }

    /// The key.
    pub(super) fn key(&self) -> String {
        let mut key: Option<String> = None;
        for group in &self.groups {
            let mut parts: Vec<&str> = key.iter().map(String::as_str).collect();
            parts.extend(group.iter().map(|(_, v)| v.as_str()));
            key = Some(hash(&parts));
        }
        key.unwrap_or_else(|| hash(&[]))
    }

    /// Every named input, in order.
    fn named(&self) -> Vec<(String, String)> {
        self.groups
            .iter()
            .flatten()
            .chain(&self.detail)
            .filter(|(n, _)| !n.is_empty())
            .cloned()
            .collect()
    }
}

/// A key's inputs as they are kept.
#[derive(Serialize, Deserialize)]
struct Record {
    inputs: Vec<(String, String)>,
}

/// Where explanations are kept in `store`.
fn dir(store: &Store) -> PathBuf {
    crate::store::layout::cache(store.root(), crate::store::layout::Cache::Explain)
}

/// Says why the step `identity` missed when `missed` (the first input
/// that differs from the step's previous key, if it had one) and, when
/// `remember`, keeps `key` as its latest, made of `inputs` (a warm check
/// builds nothing and remembers no miss: the build after it explains
/// against the same previous key).
pub(super) fn note(
    store: &Store,
    identity: &str,
    key: &str,
    inputs: &KeyInputs,
    missed: bool,
    remember: bool,
) -> Option<String> {
    let dir = dir(store);
    let step_file = dir.join("steps").join(identity);
    let key_file = dir.join("keys").join(key);
    // Only what is a key names a file (the record is the store's own, but
    // a store is not trusted to be whole).
    let previous = std::fs::read_to_string(&step_file)
        .ok()
        .filter(|k| crate::store::StepKey::parse(k).is_ok());
    let now = inputs.named();
    let why = missed.then(|| match previous.as_deref() {
        Some(prev) if prev != key => {
            match std::fs::read(dir.join("keys").join(prev))
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
            {
                Some(old) => first_difference(&old.inputs, &now),
                None => "its previous inputs are not recorded".to_string(),
            }
        }
        Some(_) => "its result is no longer in the store".to_string(),
        None => "no earlier build of this step is recorded".to_string(),
    });
    if !remember {
        return why;
    }
    // Best effort: an explanation that cannot be kept costs only itself.
    let write = |path: &PathBuf, bytes: &[u8]| {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = store.write_atomic(path, bytes);
    };
    if !key_file.exists()
        && let Ok(bytes) = serde_json::to_vec(&Record { inputs: now })
    {
        write(&key_file, &bytes);
    }
    if previous.as_deref() != Some(key) {
        write(&step_file, key.as_bytes());
    }
    why
}

/// The first input of `new` that `old` lacks or holds with another
/// value, else the first input `old` had that `new` lacks, as a person
/// reads it. The parent comes first (a miss above explains every miss
/// below), then files by path, then the rest in order; a source tree's
/// whole digest is named only when one side has no file list (a record
/// made without `--explain`), and then files are not compared.
pub(super) fn first_difference(old: &[(String, String)], new: &[(String, String)]) -> String {
    let has_files = |v: &[(String, String)]| v.iter().any(|(n, _)| n.starts_with("file "));
    let files = has_files(old) && has_files(new);
    let rank = |name: &str| match name {
        n if n.starts_with("build arg ") || n.starts_with("instruction before it") => 0,
        "parent" => 1,
        n if n.starts_with("file ") => 2,
        n if n.starts_with("source content ") => 4,
        _ => 3,
    };
    let ordered = |v: &[(String, String)]| {
        let mut v: Vec<(String, String)> = v
            .iter()
            .filter(|(n, _)| match files {
                true => !n.starts_with("source content "),
                false => !n.starts_with("file "),
            })
            .cloned()
            .collect();
        v.sort_by_key(|(n, _)| rank(n));
        v
    };
    let (old, new) = (ordered(old), ordered(new));
    let before: HashMap<&str, &str> = old.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    for (name, value) in &new {
        match before.get(name.as_str()) {
            Some(v) if v == value => {}
            Some(v) => return changed(name, v, value),
            None => {
                return match name.strip_prefix("file ") {
                    Some(path) => format!("file {path} was added"),
                    None => format!("{name} is new: {}", short(value)),
                };
            }
        }
    }
    let after: HashMap<&str, &str> = new.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    for (name, _) in &old {
        if !after.contains_key(name.as_str()) {
            return match name.strip_prefix("file ") {
                Some(path) => format!("file {path} was removed"),
                None => format!("{name} was removed"),
            };
        }
    }
    "its inputs are the same; only their order changed".to_string()
}

fn changed(name: &str, old: &str, new: &str) -> String {
    match name {
        "parent" => "the step before it changed".to_string(),
        "SOURCE_DATE_EPOCH" => format!("SOURCE_DATE_EPOCH changed: {old} -> {new}"),
        n if n.starts_with("instruction before it") => {
            format!("an instruction before it changed: {old} -> {new}")
        }
        _ => match name.strip_prefix("file ") {
            Some(path) => {
                let (old_mode, old_digest) = old.split_once(' ').unwrap_or(("", old));
                let (new_mode, new_digest) = new.split_once(' ').unwrap_or(("", new));
                if old_digest != new_digest {
                    format!(
                        "file {path} changed (content {} -> {})",
                        short_digest(old_digest),
                        short_digest(new_digest)
                    )
                } else {
                    format!("file {path} changed (mode {old_mode} -> {new_mode})")
                }
            }
            None => format!("{name} changed: {} -> {}", short(old), short(new)),
        },
    }
}

fn short_digest(d: &str) -> String {
    match d.len() > 12 && d.bytes().all(|b| b.is_ascii_hexdigit()) {
        true => format!("sha256:{}", &d[..12]),
        false => short(d),
    }
}

fn short(v: &str) -> String {
    const MAX: usize = 100;
    match v.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &v[..at]),
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_are_the_nested_hashes_they_always_were() {
        let i = KeyInputs::new(vec![("parent", "p".into()), ("", "RUN".into())])
            .then(vec![("mounts", "m".into())]);
        assert_eq!(i.key(), hash(&[&hash(&["p", "RUN"]), "m"]));
    }

    #[test]
    fn the_first_difference_is_named() {
        let old = inputs(&[
            ("parent", "a"),
            ("command", "[\"make\"]"),
            ("file src/main.rs", "100644 0123456789abcdef0123"),
            ("file README", "100644 ff"),
        ]);
        let mut new = old.clone();
        new[2].1 = "100644 fedcba98765432100000".into();
        assert_eq!(
            first_difference(&old, &new),
            "file src/main.rs changed (content sha256:0123456789ab -> sha256:fedcba987654)"
        );
        new[0].1 = "b".into();
        assert_eq!(first_difference(&old, &new), "the step before it changed");
        let fewer = inputs(&[
            ("parent", "a"),
            ("command", "[\"make\"]"),
            ("file README", "100644 ff"),
        ]);
        assert_eq!(
            first_difference(&old, &fewer),
            "file src/main.rs was removed"
        );
        assert_eq!(first_difference(&fewer, &old), "file src/main.rs was added");
        let mode = inputs(&[("file x", "100755 ff")]);
        assert_eq!(
            first_difference(&inputs(&[("file x", "100644 ff")]), &mode),
            "file x changed (mode 100644 -> 100755)"
        );
        assert_eq!(
            first_difference(
                &inputs(&[("env", "[\"A=1\"]")]),
                &inputs(&[("env", "[\"A=2\"]")])
            ),
            "env changed: [\"A=1\"] -> [\"A=2\"]"
        );
        // A record made without --explain has the tree's digest only.
        let whole = inputs(&[("parent", "a"), ("source content src", "1")]);
        let mut files = whole.clone();
        files[1].1 = "2".into();
        files.push(("file src/x".into(), "100644 ff".into()));
        assert_eq!(
            first_difference(&whole, &files),
            "source content src changed: 1 -> 2"
        );
    }
}
