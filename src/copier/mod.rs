//! COPY and ADD as operations between [`Root`]s (Buildah's `copier` verbs):
//! find sources by pattern inside their root, copy trees from one root to
//! another, and read the image being built through its layer snapshots.
//! Every path here comes from a context, a stage, an image or a
//! Dockerfile; none is ever joined onto a host path: each one is resolved
//! by [`Root`] inside the directory it belongs to.

use crate::sandbox::fs::Root;
use crate::sandbox::user;
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// How many symlinks one path may go through (Linux's limit).
const MAX_SYMLINK_HOPS: usize = 40;

/// A source a pattern matched: its name relative to its root as the
/// pattern spelled it, and the leading components `--parents` drops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// The matched path from the root, as matched (`dir/a.txt`).
    pub name: String,
    /// Leading components of `name` that `--parents` leaves out (those
    /// before a `/./` in the pattern).
    pub strip: usize,
}

/// Expands `pattern` (may hold `*`, `?`, `[...]` in any component) inside
/// `root`. Symlinks on the way are followed inside the root, never out of
/// it; a `..` that would climb above the root stays at it.
pub fn find(root: &Root, pattern: &str) -> Vec<Match> {
    // Cleaned as BuildKit cleans a source (joined onto `/`): `..` cannot
    // climb above the root, and a matched name never holds `..`, so
    // `.dockerignore` sees the path it would see for the plain name.
    let clean = components(pattern);
    let mut found = vec![String::new()];
    for part in &clean {
        let mut next = Vec::new();
        for name in &found {
            if is_pattern(part) {
                next.extend(matching_children(root, name, part, false));
            } else {
                let candidate = join(name, OsStr::new(part));
                // The parent must resolve as a directory inside the root.
                if root.exists(&candidate) {
                    next.push(candidate);
                }
            }
        }
        found = next;
    }
    found
        .into_iter()
        .filter(|n| !n.is_empty() || clean.is_empty())
        .map(|name| Match { name, strip: 0 })
        .collect()
}

/// Expands a `COPY --parents` source inside `root` as BuildKit's
/// dispatcher does: the text before the first `/./` names the directories
/// whose contents are copied (wildcards allowed), the rest is an include
/// pattern below each of them in which `**` spans any number of
/// directories; without a `/./` the whole path is kept from the root. A
/// match below another match is left out: the directory brings it.
pub fn find_parents(root: &Root, pattern: &str) -> Vec<Match> {
    let (base, rest) = pattern.split_once("/./").unwrap_or(("/", pattern));
    let rest = components(rest);
    let mut out = Vec::new();
    for b in find(root, base) {
        if !root.stat(&b.name).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let strip = components(&b.name).len();
        let mut names = Vec::new();
        include(root, &b.name, &rest, &mut names);
        names.sort();
        names.dedup();
        let mut kept: Vec<String> = Vec::new();
        for name in names {
            let below = |k: &String| {
                name.strip_prefix(k.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            };
            if !kept.iter().any(below) {
                kept.push(name);
            }
        }
        out.extend(kept.into_iter().map(|name| Match { name, strip }));
    }
    out
}

/// The paths below `name` that `parts` (an include pattern, `**` allowed)
/// matches, pushed onto `out`.
fn include(root: &Root, name: &str, parts: &[&str], out: &mut Vec<String>) {
    let Some((part, rest)) = parts.split_first() else {
        out.push(name.to_string());
        return;
    };
    if *part == "**" {
        // Zero directories, or one more and `**` again. Symlinked
        // directories are not entered, as BuildKit's walk does not.
        include(root, name, rest, out);
        for child in matching_children(root, name, "*", true) {
            include(root, &child, parts, out);
        }
    } else if is_pattern(part) {
        for child in matching_children(root, name, part, false) {
            include(root, &child, rest, out);
        }
    } else {
        let candidate = join(name, OsStr::new(part));
        if root.exists(&candidate) {
            include(root, &candidate, rest, out);
        }
    }
}

/// The names (joined onto `dir`) of `dir`'s entries that glob `part`
/// matches; only real directories when `dirs_only`.
fn matching_children(root: &Root, dir: &str, part: &str, dirs_only: bool) -> Vec<String> {
    let read = if dir.is_empty() { "." } else { dir };
    let mut names: Vec<String> = root
        .read_dir(read)
        .unwrap_or_default()
        .iter()
        .filter(|n| glob(part, &n.to_string_lossy()))
        .map(|n| join(dir, n))
        .filter(|n| !dirs_only || root.lstat(n).is_ok_and(|m| m.is_dir()))
        .collect();
    names.sort();
    names
}

/// Whether a path component holds a glob character.
fn is_pattern(part: &str) -> bool {
    part.contains(['*', '?', '['])
}

/// The components of `path` joined onto `/` and cleaned lexically, as Go's
/// `path.Join("/", p)`: `.` dropped, `..` climbs but never above the root.
pub fn components(path: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts
}

/// Shell glob of one path component: `*`, `?`, `[a-z]`, `[!x]`, `\x`.
pub fn glob(pattern: &str, name: &str) -> bool {
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

/// What a copy does to each entry it writes.
pub struct CopyOptions<'a> {
    /// Owner of every entry; None keeps the source's (`COPY --from`).
    pub owner: Option<(u32, u32)>,
    /// The mode an entry gets from its own mode (`--chmod`); None keeps it.
    pub mode: Option<&'a dyn Fn(u32, bool) -> u32>,
    /// What to take of each entry, by its path from the source root.
    pub take: &'a dyn Fn(&str) -> Take,
    /// Files with several links already copied, by (device, inode) of the
    /// source: a later name becomes a hardlink of the first copy, as
    /// BuildKit keeps them. One map for all the sources of one COPY.
    pub links: &'a Links,
}

/// What a copy takes of one source entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// The entry (and, for a directory, what is taken below it).
    Entry,
    /// Nothing: the entry and everything below it are left out.
    Nothing,
    /// A left-out directory that an exception may take things from
    /// (`.dockerignore`'s `!docs/keep.md` under an ignored `docs`): it is
    /// walked, and made only when something below it is copied.
    Below,
}

/// The hardlink map of [`CopyOptions::links`].
pub type Links = std::cell::RefCell<std::collections::HashMap<(u64, u64), String>>;

fn join(a: &str, b: &OsStr) -> String {
    let b = b.to_string_lossy();
    if a.is_empty() || a == "/" {
        b.into_owned()
    } else {
        format!("{}/{b}", a.trim_end_matches('/'))
    }
}

/// Copies `from` (a file, symlink or directory tree in `src`; a symlink at
/// `from` itself is copied as a symlink) to `to` in `dst`, with the
/// source's mtimes and the owners and modes `opts` says. Without
/// recursion: a tree's depth is bounded by memory, not by the stack.
pub fn copy_tree(
    src: &Root,
    from: &str,
    dst: &Root,
    to: &str,
    opts: &CopyOptions<'_>,
) -> io::Result<()> {
    enum Visit {
        Enter(String, String),
        Leave(String, Metadata),
    }
    let mut stack = vec![Visit::Enter(from.to_string(), to.to_string())];
    // `Take::Below` directories entered but not made yet, outermost first:
    // made (with their metadata set on leaving) when an entry lands in one.
    let mut pending: Vec<String> = Vec::new();
    while let Some(visit) = stack.pop() {
        let (from, to) = match visit {
            Visit::Leave(to, meta) => {
                if pending.last() == Some(&to) {
                    pending.pop();
                } else {
                    finish(dst, &to, &meta, opts)?;
                }
                continue;
            }
            Visit::Enter(from, to) => (from, to),
        };
        let take = (opts.take)(&from);
        if take == Take::Nothing {
            continue;
        }
        let meta = src.lstat(&from).map_err(|e| at(e, "reading", &from))?;
        let ft = meta.file_type();
        if take == Take::Below {
            if ft.is_dir() {
                let names = src.read_dir(&from).map_err(|e| at(e, "reading", &from))?;
                pending.push(to.clone());
                stack.push(Visit::Leave(to.clone(), meta));
                for n in names.iter().rev() {
                    stack.push(Visit::Enter(join(&from, n), join(&to, n)));
                }
            }
            continue;
        }
        for dir in pending.drain(..) {
            if !dst.lstat(&dir).is_ok_and(|m| m.is_dir()) {
                dst.mkdir_all(&dir, 0o755, &mut |_| Ok(()))
                    .map_err(|e| at(e, "creating", &dir))?;
            }
        }
        if ft.is_dir() {
            match dst.lstat(&to) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    dst.remove_all(&to).map_err(|e| at(e, "replacing", &to))?;
                    dst.mkdir(&to, 0o755).map_err(|e| at(e, "creating", &to))?;
                }
                Err(_) => dst
                    .mkdir_all(&to, 0o755, &mut |_| Ok(()))
                    .map(drop)
                    .map_err(|e| at(e, "creating", &to))?,
            }
            let names = src.read_dir(&from).map_err(|e| at(e, "reading", &from))?;
            stack.push(Visit::Leave(to.clone(), meta));
            // Reversed onto the stack: popped in name order.
            for n in names.iter().rev() {
                stack.push(Visit::Enter(join(&from, n), join(&to, n)));
            }
            continue;
        }
        if ft.is_symlink() {
            let target = src.read_link(&from).map_err(|e| at(e, "reading", &from))?;
            if dst.lstat(&to).is_ok_and(|m| m.is_dir()) {
                dst.remove_all(&to).map_err(|e| at(e, "replacing", &to))?;
            }
            dst.symlink(target.as_os_str(), &to)
                .map_err(|e| at(e, "creating", &to))?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                let first = opts.links.borrow().get(&key).cloned();
                if let Some(first) = first {
                    if dst.lstat(&to).is_ok() {
                        dst.remove_all(&to).map_err(|e| at(e, "replacing", &to))?;
                    }
                    dst.hard_link(&first, &to)
                        .map_err(|e| at(e, "linking", &to))?;
                    continue;
                }
                opts.links.borrow_mut().insert(key, to.clone());
            }
            let mut input = src
                .open_read_nofollow(&from)
                .map_err(|e| at(e, "reading", &from))?;
            let mut out = dst
                .create_file(&to, 0o600)
                .map_err(|e| at(e, "creating", &to))?;
            io::copy(&mut input, &mut out).map_err(|e| at(e, "writing", &to))?;
            // Through the descriptor already open: no path to resolve again
            // (a 20,000-file COPY makes 60,000 fewer lookups).
            finish_open(&out, &meta, opts).map_err(|e| at(e, "setting metadata on", &to))?;
            continue;
        } else {
            // Devices, FIFOs and sockets are not copied by COPY either.
            continue;
        }
        finish(dst, &to, &meta, opts)?;
    }
    Ok(())
}

/// Owner, mode and mtime of a copied entry: chown first (it clears setuid
/// bits), then the mode, the time last.
fn finish(dst: &Root, to: &str, meta: &Metadata, opts: &CopyOptions<'_>) -> io::Result<()> {
    let (uid, gid) = opts.owner.unwrap_or((meta.uid(), meta.gid()));
    dst.chown(to, uid, gid).map_err(|e| at(e, "chown", to))?;
    if !meta.file_type().is_symlink() {
        let mode = meta.mode() & 0o7777;
        let mode = opts.mode.map_or(mode, |f| f(mode, meta.is_dir()));
        dst.chmod(to, mode).map_err(|e| at(e, "chmod", to))?;
    }
    dst.set_mtime(to, meta.mtime(), meta.mtime_nsec())
        .map_err(|e| at(e, "setting times on", to))
}

/// [`finish`] for a regular file this copy has open: chown, mode, times.
fn finish_open(out: &std::fs::File, meta: &Metadata, opts: &CopyOptions<'_>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (uid, gid) = opts.owner.unwrap_or((meta.uid(), meta.gid()));
    std::os::unix::fs::fchown(out, Some(uid), Some(gid))?;
    let mode = meta.mode() & 0o7777;
    let mode = opts.mode.map_or(mode, |f| f(mode, false));
    out.set_permissions(std::fs::Permissions::from_mode(mode))?;
    let modified = meta.modified()?;
    out.set_times(
        std::fs::FileTimes::new()
            .set_modified(modified)
            .set_accessed(modified),
    )
}

fn at(e: io::Error, action: &str, rel: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{action} {rel}: {e}"))
}

/// The image being built, seen through its layer snapshots (top last):
/// the topmost layer that has a path decides, a whiteout there hides it.
pub struct Layers {
    roots: Vec<Root>,
}

impl Layers {
    /// Opens the snapshot directories (bottom layer first).
    pub fn open(snapshots: &[std::path::PathBuf]) -> io::Result<Layers> {
        let roots = snapshots
            .iter()
            .map(|p| Root::open(p))
            .collect::<io::Result<_>>()?;
        Ok(Layers { roots })
    }

    /// Metadata of `rel` (not followed) in the image; None when absent.
    pub fn meta(&self, rel: &str) -> Option<Metadata> {
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() {
            return None;
        }
        for root in self.roots.iter().rev() {
            if let Ok(m) = root.lstat(rel) {
                let whiteout = m.file_type().is_char_device() && m.rdev() == 0;
                return (!whiteout).then_some(m);
            }
        }
        None
    }

    /// True when `rel` is a directory in the image.
    pub fn is_dir(&self, rel: &str) -> bool {
        self.meta(rel).is_some_and(|m| m.is_dir())
    }

    /// `path` with the image's symlinks in it resolved, as the kernel would
    /// inside the container: absolute targets start again at the image's
    /// root, and `..` never climbs above it.
    pub fn resolve(&self, path: &str) -> String {
        let mut todo: VecDeque<String> = path.split('/').map(str::to_string).collect();
        let mut out: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = todo.pop_front() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    out.pop();
                    continue;
                }
                _ => out.push(part),
            }
            let rel = out.join("/");
            let Some(meta) = self.meta(&rel) else {
                continue;
            };
            if !meta.file_type().is_symlink() || hops >= MAX_SYMLINK_HOPS {
                continue;
            }
            hops += 1;
            let target = self
                .roots
                .iter()
                .rev()
                .find_map(|r| r.read_link(&rel).ok())
                .unwrap_or_default();
            let target = target.to_string_lossy();
            out.pop();
            if target.starts_with('/') {
                out.clear();
            }
            for (i, p) in target.split('/').enumerate() {
                todo.insert(i, p.to_string());
            }
        }
        format!("/{}", out.join("/"))
    }

    /// A small file of the image (/etc/passwd), its path resolved through
    /// the image's symlinks; empty when absent.
    pub fn read_file(&self, rel: &str) -> String {
        let rel = self.resolve(rel);
        self.roots
            .iter()
            .rev()
            .find_map(|r| {
                // Not a FIFO (a hang) nor a device (the host's).
                let f = r.open_regular(&rel, false).ok()?;
                io::read_to_string(f).ok()
            })
            .unwrap_or_default()
    }

    /// `--chown`'s or USER's `user[:group]` as numbers, names looked up
    /// in the image's /etc/passwd and /etc/group.
    pub fn owner(&self, spec: &str) -> Result<(u32, u32), String> {
        let u = user::resolve(
            spec,
            &self.read_file("etc/passwd"),
            &self.read_file("etc/group"),
        )?;
        Ok((u.uid, u.gid))
    }

    /// Makes directory `rel` in `staging` with its missing parents. Those
    /// the image has keep its mode, owner and mtime (a layer must not
    /// change them); new ones are 0755 and owned by `owner`, as BuildKit
    /// makes them.
    /// A directory the image lacks is made `mode` (a COPY's octal
    /// `--chmod`, else 0755, as BuildKit's copy makes missing parents).
    pub fn make_parents(
        &self,
        staging: &Root,
        rel: &str,
        owner: (u32, u32),
        mode: u32,
    ) -> io::Result<()> {
        staging.mkdir_all(rel, 0o755, &mut |made| match self.meta(made) {
            Some(m) if m.is_dir() => {
                staging.chmod(made, m.mode() & 0o7777)?;
                staging.chown(made, m.uid(), m.gid())?;
                staging.set_mtime(made, m.mtime(), m.mtime_nsec())
            }
            _ => {
                staging.chown(made, owner.0, owner.1)?;
                if mode != 0o755 {
                    staging.chmod(made, mode)?;
                }
                Ok(())
            }
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn globs() {
        assert!(glob("*.txt", "a.txt"));
        assert!(!glob("*.txt", "a.txt.bak"));
        assert!(glob("file?.rs", "file1.rs"));
        assert!(glob("[a-c]x", "bx") && !glob("[!a-c]x", "bx"));
        assert!(glob("\\*", "*") && !glob("\\*", "a"));
        assert!(glob("*", ""));
    }

    /// A context symlink to a host directory is a path inside the
    /// context: `d -> /etc` finds the context's own etc, or nothing.
    #[test]
    fn sources_resolve_inside_their_root() {
        let outer = tempfile::tempdir().unwrap();
        let ctx = outer.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        std::fs::write(outer.path().join("shadow"), "host").unwrap();
        symlink(outer.path(), ctx.join("d")).unwrap();
        symlink("../../..", ctx.join("up")).unwrap();
        let root = Root::open(&ctx).unwrap();
        assert!(find(&root, "d/shadow").is_empty());
        assert!(find(&root, "up/shadow").is_empty());
        assert!(find(&root, "../shadow").is_empty());
        std::fs::write(ctx.join("secret"), "s").unwrap();
        let m = find(&root, "../../secret");
        assert_eq!(
            m.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["secret"]
        );
        assert!(find(&root, "d/*").is_empty());
        std::fs::write(ctx.join("a.txt"), "a").unwrap();
        let m = find(&root, "./*.txt");
        assert_eq!(
            m.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["a.txt"]
        );
    }

    /// Two sources into one destination: a symlink the first made is never
    /// written through by the second.
    #[test]
    fn a_copied_symlink_is_not_written_through() {
        let outer = tempfile::tempdir().unwrap();
        let (src, dst) = (outer.path().join("src"), outer.path().join("dst"));
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::create_dir_all(src.join("b/sub")).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        let victim = outer.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        symlink(&victim, src.join("a/sub")).unwrap();
        std::fs::write(src.join("b/sub/f"), "x").unwrap();
        let (s, d) = (Root::open(&src).unwrap(), Root::open(&dst).unwrap());
        let opts = CopyOptions {
            owner: Some((0, 0)),
            mode: None,
            take: &|_| Take::Entry,
            links: &Links::default(),
        };
        copy_tree(&s, "a", &d, "out", &opts).unwrap();
        copy_tree(&s, "b", &d, "out", &opts).unwrap();
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    }
}
