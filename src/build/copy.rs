//! COPY and ADD: sources from the context (minus .dockerignore), another
//! stage, or a heredoc; Docker's destination rules; owners and modes; ADD's
//! local tar extraction. The cache key hashes names, modes and contents,
//! never mtimes, so a fresh checkout of the same context hits the cache.

use super::{BuildError, State, StepResult, commit_dir, hash, step_error};
use crate::context::ignore::Matcher;
use crate::dockerfile::instructions::{self, Copy, Stage};
use crate::layer::{self, Mode};
use crate::sandbox::user;
use crate::store::{Digest, Store};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

type Run<'a> = Box<dyn FnOnce() -> Result<StepResult, BuildError> + 'a>;

/// A resolved source: where it is, and its name relative to its root.
struct Source {
    path: PathBuf,
    name: String,
}

/// The step's cache key and the work that makes its layer (run on a miss).
#[allow(clippy::too_many_arguments)]
pub(super) fn step<'a>(
    store: &'a Store,
    built: &'a [Option<State>],
    stages: &'a [Stage],
    state: &'a State,
    c: &'a Copy,
    add: bool,
    args: &[(String, String)],
    opts: &'a super::Options,
    ignore: &'a Matcher,
    escape: char,
    step: &'a instructions::Step,
) -> Result<(String, Run<'a>), BuildError> {
    let vars = super::variables(state, args);
    let expand = |w: &str| super::expand_word(&vars, escape, step, w);
    let kw = if add { "ADD" } else { "COPY" };

    let dest_raw = expand(&c.dest)?;
    let joined = state.in_workdir(&dest_raw);
    // `.` and a trailing `/.` name a directory, like a trailing `/`.
    let names_dir = dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
    let dest: String = {
        let parts: Vec<&str> = joined
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        format!("/{}", parts.join("/"))
    };
    let chown = c.chown.as_deref().map(&expand).transpose()?;
    let chmod = match c.chmod.as_deref().map(&expand).transpose()? {
        Some(m) => Some(u32::from_str_radix(&m, 8).map_err(|_| {
            step_error(
                step,
                format!("--chmod={m}: kiln supports octal modes so far"),
            )
        })?),
        None => None,
    };

    // Where sources come from.
    let (root, from_context) = match &c.from {
        Some(from) => (
            flatten_stage(store, built, stages, &expand(from)?).map_err(|m| step_error(step, m))?,
            false,
        ),
        None => (opts.context.clone(), true),
    };
    // A flattened stage is removed when the work is done or dropped unrun
    // (a cache hit).
    let cleanup = Cleanup((!from_context).then(|| root.clone()));
    let mut sources = Vec::new();
    let mut heredocs = Vec::new();
    for raw in &c.sources {
        if let Some(h) = c.heredocs.iter().find(|h| {
            raw.trim_start_matches("<<")
                .trim_start_matches('-')
                .trim_matches(['"', '\''])
                == h.name
        }) {
            heredocs.push(h.clone());
            continue;
        }
        let pattern = expand(raw)?;
        if add
            && (pattern.starts_with("http://")
                || pattern.starts_with("https://")
                || pattern.starts_with("git@"))
        {
            return Err(step_error(
                step,
                format!(
                    "ADD {pattern}: remote sources come with registry and network support; not in kiln yet"
                ),
            ));
        }
        let found = resolve(
            &root,
            &pattern,
            if from_context { Some(ignore) } else { None },
        );
        if found.is_empty() {
            return Err(step_error(
                step,
                format!(
                    "{kw} failed: \"{pattern}\": not found in the {}",
                    if from_context {
                        "build context (or excluded by .dockerignore)"
                    } else {
                        "source stage"
                    }
                ),
            ));
        }
        sources.extend(found);
    }
    let count = sources.len() + heredocs.len();
    let dest_is_dir = names_dir
        || count > 1
        || (sources.len() == 1 && sources[0].path.is_dir())
        || image_has_dir(store, state, &dest);
    if count > 1 && !names_dir {
        return Err(step_error(
            step,
            format!(
                "When using {kw} with more than one source file, the destination must be a directory and end with a /"
            ),
        ));
    }

    let mut key_parts = vec![
        state.key.clone(),
        kw.to_string(),
        dest.clone(),
        format!("{chown:?}"),
        format!("{chmod:?}"),
        format!("{:?}", c.from),
    ];
    for s in &sources {
        key_parts.push(s.name.clone());
        key_parts.push(content_digest(
            &s.path,
            if from_context {
                Some((ignore, &opts.context))
            } else {
                None
            },
        ));
    }
    for h in &heredocs {
        key_parts.push(h.name.clone());
        key_parts.push(h.content.clone());
    }
    let refs: Vec<&str> = key_parts.iter().map(String::as_str).collect();
    let key = hash(&refs);

    let work: Run<'a> = Box::new(move || {
        let _cleanup = cleanup;
        let owner = match &chown {
            Some(spec) => {
                let (passwd, group) = (
                    read_image_file(store, state, "etc/passwd"),
                    read_image_file(store, state, "etc/group"),
                );
                let u = user::resolve(spec, &passwd, &group).map_err(|m| step_error(step, m))?;
                (u.uid, u.gid)
            }
            None => (0, 0),
        };
        let staging = store.temp_path("copy");
        let fail = |e: std::io::Error| step_error(step, format!("{kw}: {e}"));
        let target = staging.join(dest.trim_start_matches('/'));
        let dest_dir = if dest_is_dir {
            target.clone()
        } else {
            target
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or(staging.clone())
        };
        fs::create_dir_all(&dest_dir).map_err(fail)?;
        for s in &sources {
            let meta = fs::symlink_metadata(&s.path).map_err(fail)?;
            let to = if !dest_is_dir {
                target.clone()
            } else if meta.is_dir() {
                dest_dir.clone()
            } else {
                dest_dir.join(Path::new(&s.name).file_name().unwrap_or_default())
            };
            if add && meta.is_file() && is_archive(&s.path) {
                let file = fs::File::open(&s.path).map_err(fail)?;
                layer::apply(file, &dest_dir, Mode::Flatten)
                    .map_err(|e| step_error(step, format!("ADD: extracting {}: {e}", s.name)))?;
                continue;
            }
            copy_tree(
                &s.path,
                &to,
                owner,
                chmod,
                if from_context {
                    Some((ignore, opts.context.as_path()))
                } else {
                    None
                },
            )
            .map_err(fail)?;
        }
        for h in &heredocs {
            let to = if dest_is_dir {
                dest_dir.join(&h.name)
            } else {
                target.clone()
            };
            fs::write(&to, &h.content).map_err(fail)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(chmod.unwrap_or(0o644)))
                .map_err(fail)?;
            lchown(&to, Some(owner.0), Some(owner.1)).map_err(fail)?;
        }
        commit_dir(store, &staging)
    });
    Ok((key, work))
}

/// Removes a temporary directory when dropped.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 262];
    let n = fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    layer::Compression::detect(&head[..n]) != layer::Compression::None
        || (n >= 262 && &head[257..262] == b"ustar")
}

/// Expands `pattern` (may hold `*`, `?`, `[...]` in any component) under
/// `root`; with `ignore`, excluded paths are left out.
fn resolve(root: &Path, pattern: &str, ignore: Option<&Matcher>) -> Vec<Source> {
    let clean: Vec<&str> = pattern
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if clean.contains(&"..") {
        return Vec::new();
    }
    let mut found = vec![(root.to_path_buf(), String::new())];
    for part in &clean {
        let mut next = Vec::new();
        for (dir, name) in &found {
            let join = |n: &str| {
                if name.is_empty() {
                    n.to_string()
                } else {
                    format!("{name}/{n}")
                }
            };
            if part.contains(['*', '?', '[']) {
                let mut entries: Vec<String> = fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| glob(part, n))
                    .collect();
                entries.sort();
                next.extend(entries.into_iter().map(|n| (dir.join(&n), join(&n))));
            } else if fs::symlink_metadata(dir.join(part)).is_ok() {
                next.push((dir.join(part), join(part)));
            }
        }
        found = next;
    }
    found
        .into_iter()
        .filter(|(_, name)| ignore.is_none_or(|m| name.is_empty() || !m.is_ignored(name)))
        .map(|(path, name)| Source { path, name })
        .collect()
}

/// Shell glob of one path component: `*`, `?`, `[a-z]`, `[!x]`, `\x`.
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().skip(1).position(|&c| c == ']').map(|e| e + 1) else {
                    return n.first() == Some(&'[') && go(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let class = &p[1..end];
                let (neg, class) = match class.first() {
                    Some('!' | '^') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != neg && go(&p[end + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    go(&p, &n)
}

/// Digest of names, modes and contents under `path` (not mtimes or owners).
pub(super) fn content_digest(path: &Path, ignore: Option<(&Matcher, &PathBuf)>) -> String {
    let mut h = Sha256::new();
    fn walk(h: &mut Sha256, path: &Path, rel: &str, ignore: Option<(&Matcher, &PathBuf)>) {
        if let Some((m, root)) = ignore
            && let Ok(name) = path.strip_prefix(root)
            && !name.as_os_str().is_empty()
            && m.is_ignored(&name.to_string_lossy())
        {
            return;
        }
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        h.update(rel.as_bytes());
        h.update(meta.mode().to_le_bytes());
        if meta.is_dir() {
            let mut names: Vec<_> = fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names {
                walk(
                    h,
                    &path.join(&n),
                    &format!("{rel}/{}", n.to_string_lossy()),
                    ignore,
                );
            }
        } else if meta.file_type().is_symlink() {
            h.update(
                fs::read_link(path)
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default()
                    .as_bytes(),
            );
        } else if let Ok(mut f) = fs::File::open(path) {
            let _ = std::io::copy(&mut f, h);
        }
    }
    walk(&mut h, path, "", ignore);
    Digest::sha256(h.finalize().as_slice()).hex().to_string()
}

/// Copies a file, symlink or directory tree, with `owner`, `chmod` (when
/// given) and the source's mtimes; ignored context paths are skipped.
pub(super) fn copy_tree(
    from: &Path,
    to: &Path,
    owner: (u32, u32),
    chmod: Option<u32>,
    ignore: Option<(&Matcher, &Path)>,
) -> std::io::Result<()> {
    if let Some((m, root)) = ignore
        && let Ok(name) = from.strip_prefix(root)
        && !name.as_os_str().is_empty()
        && m.is_ignored(&name.to_string_lossy())
    {
        return Ok(());
    }
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() {
        fs::create_dir_all(to)?;
        let mut names: Vec<_> = fs::read_dir(from)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            copy_tree(&from.join(&n), &to.join(&n), owner, chmod, ignore)?;
        }
    } else if meta.file_type().is_symlink() {
        let _ = fs::remove_file(to);
        symlink(fs::read_link(from)?, to)?;
        lchown(to, Some(owner.0), Some(owner.1))?;
        return Ok(());
    } else {
        if fs::symlink_metadata(to).is_ok_and(|m| !m.is_dir()) {
            fs::remove_file(to)?;
        }
        fs::copy(from, to)?;
    }
    lchown(to, Some(owner.0), Some(owner.1))?;
    let mode = chmod.unwrap_or(meta.mode() & 0o7777);
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    let t = filetime::FileTime::from_last_modification_time(&meta);
    filetime::set_symlink_file_times(to, t, t)
}

/// True when `path` is a directory in the image being built (the topmost
/// layer that has the path decides).
fn image_has_dir(store: &Store, state: &State, path: &str) -> bool {
    let rel = path.trim_start_matches('/');
    for (_, diff_id) in state.layers.iter().rev() {
        if let Ok(m) = fs::symlink_metadata(store.snapshot_path(diff_id).join(rel)) {
            return m.is_dir();
        }
    }
    false
}

/// A file of the image being built (for /etc/passwd), topmost layer first.
fn read_image_file(store: &Store, state: &State, rel: &str) -> String {
    state
        .layers
        .iter()
        .rev()
        .find_map(|(_, d)| fs::read_to_string(store.snapshot_path(d).join(rel)).ok())
        .unwrap_or_default()
}

/// A stage's (or a stored image's) layers flattened into a directory, as a
/// COPY --from source.
pub(super) fn flatten_stage(
    store: &Store,
    built: &[Option<State>],
    stages: &[Stage],
    from: &str,
) -> Result<PathBuf, String> {
    let lower = from.to_lowercase();
    let layers = match stages
        .iter()
        .position(|s| s.from.name.as_deref() == Some(lower.as_str()))
        .or_else(|| from.parse().ok())
    {
        Some(i) => built
            .get(i)
            .and_then(|b| b.as_ref())
            .map(|s| s.layers.clone())
            .ok_or_else(|| format!("stage {from} is not built yet"))?,
        None => crate::image::Image::resolve(store, from)
            .map_err(|_| format!("--from={from}: no such stage, and no such image in the store"))?
            .layers(),
    };
    let dir = store.temp_path("from");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for (desc, _) in layers {
        let digest = crate::image::manifest_digest(&desc).map_err(|e| e.to_string())?;
        let blob = store
            .open_blob(&digest)
            .map_err(|e: crate::store::StoreError| e.to_string())?;
        layer::apply(blob, &dir, Mode::Flatten).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("*.txt", "a.txt"));
        assert!(!glob("*.txt", "a.txt.bak"));
        assert!(glob("file?.rs", "file1.rs"));
        assert!(glob("[a-c]x", "bx") && !glob("[!a-c]x", "bx"));
        assert!(glob("\\*", "*") && !glob("\\*", "a"));
        assert!(glob("*", ""));
    }
}
