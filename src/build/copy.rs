//! COPY and ADD: sources from the context (minus .dockerignore), another
//! stage, or a heredoc; Docker's destination rules; owners and modes; ADD's
//! local tar extraction. The cache key hashes names, modes and contents,
//! never mtimes, so a fresh checkout of the same context hits the cache.

use super::{BuildError, State, StepResult, commit_dir, hash, step_error};
use crate::context::digest::StatCache;
use crate::context::ignore::Matcher;
use crate::dockerfile::instructions::{self, Copy, Stage};
use crate::layer::{self, Mode};
use crate::sandbox::user;
use crate::store::Store;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

type Run<'a> = Box<dyn FnOnce() -> Result<StepResult, BuildError> + 'a>;

/// A resolved source: where it is, and its name relative to its root.
struct Source {
    path: PathBuf,
    name: String,
    /// Leading components of `name` that `--parents` leaves out (those
    /// before a `/./` in the pattern).
    strip: usize,
    /// Downloaded by ADD from a URL: written 0600, never extracted.
    remote: bool,
}

/// `--chmod`: octal, or symbolic clauses applied to each file's own mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Chmod {
    /// `0755`.
    Octal(u32),
    /// `u+x,go-w`: (who mask, operator, permission letters).
    Symbolic(Vec<(u32, char, String)>),
}

impl Chmod {
    /// Parses `--chmod`'s value as chmod(1) does (no umask: an empty
    /// "who" means all).
    pub(super) fn parse(text: &str) -> Result<Chmod, String> {
        if !text.is_empty() && text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return u32::from_str_radix(text, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Chmod::Octal)
                .ok_or_else(|| format!("invalid --chmod={text}: out of range"));
        }
        let mut clauses = Vec::new();
        for clause in text.split(',') {
            let op_at = clause
                .find(['+', '-', '='])
                .ok_or_else(|| format!("invalid --chmod={text}: {clause:?} has no +, - or ="))?;
            let (who, rest) = clause.split_at(op_at);
            let mut mask = 0;
            for c in who.chars() {
                mask |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(format!("invalid --chmod={text}: unknown class {c:?}")),
                };
            }
            if mask == 0 {
                mask = 0o7777;
            }
            let op = rest.chars().next().unwrap_or('=');
            let perms = &rest[1..];
            if let Some(c) = perms.chars().find(|c| !"rwxXst".contains(*c)) {
                return Err(format!("invalid --chmod={text}: unknown permission {c:?}"));
            }
            clauses.push((mask, op, perms.to_string()));
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode a file whose mode is `mode` gets.
    pub(super) fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            Chmod::Octal(m) => return *m,
            Chmod::Symbolic(c) => c,
        };
        let mut mode = mode & 0o7777;
        for (mask, op, perms) in clauses {
            let mut bits = 0;
            for p in perms.chars() {
                bits |= match p {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' if is_dir || mode & 0o111 != 0 => 0o111,
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => 0,
                };
            }
            let bits = bits & mask;
            mode = match op {
                '+' => mode | bits,
                '-' => mode & !bits,
                _ => (mode & !mask) | bits,
            };
        }
        mode
    }
}

/// What a COPY leaves out: `.dockerignore`d context paths and `--exclude`
/// patterns, matched against the path from the source root and from the
/// source being copied.
struct Filter<'a> {
    root: PathBuf,
    ignore: Option<&'a Matcher>,
    exclude: Option<Matcher>,
}

impl Filter<'_> {
    /// True when `path`, found under the source `base`, is left out.
    fn skips(&self, base: &Path, path: &Path) -> bool {
        let rel = |from: &Path| {
            path.strip_prefix(from)
                .ok()
                .map(|r| r.to_string_lossy().into_owned())
                .filter(|r| !r.is_empty())
        };
        let from_root = rel(&self.root);
        if let (Some(m), Some(r)) = (self.ignore, &from_root)
            && m.is_ignored(r)
        {
            return true;
        }
        match &self.exclude {
            Some(ex) => [from_root, rel(base)]
                .iter()
                .flatten()
                .any(|r| ex.is_ignored(r)),
            None => false,
        }
    }
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
    stat: &StatCache,
    flattened: &Flattened,
    escape: char,
    step: &'a instructions::Step,
) -> Result<(String, Run<'a>), BuildError> {
    let vars = super::variables(state, args);
    let expand = |w: &str| super::expand_word(&vars, escape, step, w);
    let kw = if add { "ADD" } else { "COPY" };
    // `--link` makes a layer that does not depend on what is below it: it
    // is written as onto an empty image, and its key leaves the parent out.
    let view = if c.link {
        State {
            config: state.config.clone(),
            layers: Vec::new(),
            key: hash(&["link"]),
            cmd_set: false,
        }
    } else {
        state.clone()
    };

    let dest_raw = expand(&c.dest)?;
    let joined = state.in_workdir(&dest_raw);
    // `.` and a trailing `/.` name a directory, like a trailing `/`.
    let names_dir =
        dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.") || c.parents;
    let dest: String = {
        let parts: Vec<&str> = joined
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        resolve_in_image(store, &view, &format!("/{}", parts.join("/")))
    };
    let chown = c.chown.as_deref().map(&expand).transpose()?;
    let chmod = match c.chmod.as_deref().map(&expand).transpose()? {
        Some(m) => Some(Chmod::parse(&m).map_err(|e| step_error(step, e))?),
        None => None,
    };
    let exclude = match c.exclude.is_empty() {
        true => None,
        false => {
            let patterns: Vec<String> = c
                .exclude
                .iter()
                .map(|e| expand(e))
                .collect::<Result<_, _>>()?;
            Some(
                Matcher::parse(&patterns.join("\n"), Path::new("--exclude"))
                    .map_err(|e| step_error(step, e.to_string()))?,
            )
        }
    };

    // Where sources come from.
    let (root, from_context) = match &c.from {
        Some(from) => (
            flattened
                .get(store, built, stages, &expand(from)?)
                .map_err(|m| step_error(step, m))?,
            false,
        ),
        None => (opts.context.clone(), true),
    };
    // Downloads are removed when the work is done or dropped unrun (a
    // cache hit).
    let mut cleanup = Cleanup(Vec::new());
    let filter = Filter {
        root: root.clone(),
        ignore: from_context.then_some(ignore),
        exclude,
    };
    let checksum = c.checksum.as_deref().map(&expand).transpose()?;
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
        if add && is_git(&pattern) {
            return Err(step_error(
                step,
                format!(
                    "ADD {pattern}: git sources are not supported by kiln yet; clone in the context or a RUN step"
                ),
            ));
        }
        if add && (pattern.starts_with("http://") || pattern.starts_with("https://")) {
            let got = super::fetch::download(store, &pattern, checksum.as_deref())
                .map_err(|m| step_error(step, m))?;
            cleanup.0.push(got.path.clone());
            sources.push(Source {
                path: got.path,
                name: got.name,
                strip: 0,
                remote: true,
            });
            continue;
        }
        if checksum.is_some() {
            return Err(step_error(
                step,
                "--checksum applies to http(s) sources only".to_string(),
            ));
        }
        let found: Vec<Source> = resolve(&root, &pattern)
            .into_iter()
            .filter(|s| !filter.skips(&root, &s.path))
            .collect();
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
        || image_has_dir(store, &view, &dest);
    if count > 1 && !names_dir {
        return Err(step_error(
            step,
            format!(
                "When using {kw} with more than one source file, the destination must be a directory and end with a /"
            ),
        ));
    }

    let no_stat = StatCache::none();
    let mut key_parts = vec![
        view.key.clone(),
        kw.to_string(),
        dest.clone(),
        format!("{chown:?}"),
        format!("{chmod:?}"),
        format!("{:?}", c.from),
        format!("{:?} {:?} {}", c.exclude, c.parents, c.link),
    ];
    for s in &sources {
        key_parts.push(format!("{} {} {}", s.name, s.strip, s.remote));
        let digests = if from_context && !s.remote {
            stat
        } else {
            &no_stat
        };
        key_parts.push(digests.tree_digest(&s.path, &|p| filter.skips(&s.path, p)));
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
        fs::create_dir_all(&staging).map_err(fail)?;
        let rel = dest_dir.strip_prefix(&staging).unwrap_or(Path::new(""));
        make_parents(store, &view, &staging, &rel.to_string_lossy(), owner).map_err(fail)?;
        for s in &sources {
            let meta = fs::symlink_metadata(&s.path).map_err(fail)?;
            let to = if !dest_is_dir {
                target.clone()
            } else if c.parents {
                let kept: Vec<&str> = s.name.split('/').skip(s.strip).collect();
                let to = dest_dir.join(kept.join("/"));
                if let Some(parent) = to.parent().and_then(|p| p.strip_prefix(&staging).ok()) {
                    make_parents(store, &view, &staging, &parent.to_string_lossy(), owner)
                        .map_err(fail)?;
                }
                to
            } else if meta.is_dir() {
                dest_dir.clone()
            } else {
                dest_dir.join(Path::new(&s.name).file_name().unwrap_or_default())
            };
            if add
                && !s.remote
                && meta.is_file()
                && c.unpack != Some(false)
                && let Some(tar) = tar_archive(store, &s.path).map_err(fail)?
            {
                let extracted = layer::apply(tar.reader, &dest_dir, Mode::Flatten);
                if let Some(temp) = tar.temp {
                    let _ = fs::remove_file(temp);
                }
                extracted
                    .map_err(|e| step_error(step, format!("ADD: extracting {}: {e}", s.name)))?;
                continue;
            }
            let chmod = match (&chmod, s.remote) {
                (None, true) => Some(Chmod::Octal(0o600)),
                (c, _) => c.clone(),
            };
            let skip = |p: &Path| filter.skips(&s.path, p);
            if !meta.is_dir() {
                copy_tree(&s.path, &to, owner, chmod.as_ref(), &skip).map_err(fail)?;
                continue;
            }
            // A directory's contents are copied; the directory it lands in
            // keeps the image's metadata, or is made 0755 and owned by
            // --chown, as BuildKit makes it (--chmod is not applied to it).
            if let Ok(rel) = to.strip_prefix(&staging) {
                make_parents(store, &view, &staging, &rel.to_string_lossy(), owner)
                    .map_err(fail)?;
            }
            let mut names: Vec<_> = fs::read_dir(&s.path)
                .map_err(fail)?
                .flatten()
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names {
                copy_tree(&s.path.join(&n), &to.join(&n), owner, chmod.as_ref(), &skip)
                    .map_err(fail)?;
            }
        }
        for h in &heredocs {
            let to = if dest_is_dir {
                dest_dir.join(&h.name)
            } else {
                target.clone()
            };
            fs::write(&to, &h.content).map_err(fail)?;
            let mode = chmod.as_ref().map_or(0o644, |c| c.apply(0o644, false));
            fs::set_permissions(&to, fs::Permissions::from_mode(mode)).map_err(fail)?;
            lchown(&to, Some(owner.0), Some(owner.1)).map_err(fail)?;
        }
        commit_dir(store, &staging)
    });
    Ok((key, work))
}

/// True for the sources ADD would clone with git.
fn is_git(source: &str) -> bool {
    source.starts_with("git@")
        || source.starts_with("git://")
        || ((source.starts_with("http://") || source.starts_with("https://"))
            && (source.ends_with(".git") || source.contains(".git#")))
}

/// Removes temporary files and directories when dropped.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in self.0.drain(..) {
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
    }
}

/// A tar archive ADD extracts: its (decompressed) stream, and a temporary
/// file to remove afterwards.
struct TarArchive {
    reader: Box<dyn Read>,
    temp: Option<PathBuf>,
}

/// The tar inside `path`, plain or compressed with gzip, zstd, bzip2 or xz
/// (known by content, not name), as Docker's ADD extracts it; None for
/// anything else, which ADD copies as it is (a compressed file that is not
/// a tar too).
fn tar_archive(store: &Store, path: &Path) -> std::io::Result<Option<TarArchive>> {
    const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
    let mut head = [0u8; 6];
    let n = fs::File::open(path)?.read(&mut head)?;
    let head = &head[..n];
    let open = || fs::File::open(path).map(std::io::BufReader::new);
    let (reader, temp): (Box<dyn Read>, Option<PathBuf>) = if head.starts_with(b"BZh") {
        (Box::new(bzip2::read::MultiBzDecoder::new(open()?)), None)
    } else if head.starts_with(XZ) {
        // lzma-rs decodes into a writer: the tar goes to a temporary file.
        let temp = store.temp_path("xz");
        let mut out = std::io::BufWriter::new(fs::File::create(&temp)?);
        let decoded = lzma_rs::xz_decompress(&mut open()?, &mut out)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|()| out.into_inner().map_err(|e| e.into_error()).map(drop));
        if decoded.is_err() {
            let _ = fs::remove_file(&temp);
            return Ok(None);
        }
        (Box::new(fs::File::open(&temp)?), Some(temp))
    } else {
        // Plain, gzip and zstd: the layer reader knows them.
        match layer::decompress(open()?) {
            Ok((_, r)) => (r, None),
            Err(_) => return Ok(None),
        }
    };
    // A tar has "ustar" at 257 (or is an old v7 tar with a checksum we do
    // not guess at: those are copied, as most tools would not make one).
    let mut reader = reader;
    let mut block = vec![0u8; 512];
    let mut got = 0;
    while got < block.len() {
        match reader.read(&mut block[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(_) => break,
        }
    }
    if got < 262 || &block[257..262] != b"ustar" {
        if let Some(t) = &temp {
            let _ = fs::remove_file(t);
        }
        return Ok(None);
    }
    block.truncate(got);
    Ok(Some(TarArchive {
        reader: Box::new(std::io::Cursor::new(block).chain(reader)),
        temp,
    }))
}

/// Expands `pattern` (may hold `*`, `?`, `[...]` in any component) under
/// `root`. A `.` component after the first marks where `--parents` starts.
fn resolve(root: &Path, pattern: &str) -> Vec<Source> {
    let all: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    let strip = all
        .iter()
        .skip(1)
        .position(|p| *p == ".")
        .map_or(0, |pivot| {
            all[..=pivot].iter().filter(|p| **p != ".").count()
        });
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
        .map(|(path, name)| Source {
            path,
            name,
            strip,
            remote: false,
        })
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

/// Copies a file, symlink or directory tree, with `owner`, `chmod` (when
/// given) and the source's mtimes, leaving out what `skip` says.
pub(super) fn copy_tree(
    from: &Path,
    to: &Path,
    owner: (u32, u32),
    chmod: Option<&Chmod>,
    skip: &dyn Fn(&Path) -> bool,
) -> std::io::Result<()> {
    if skip(from) {
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
            copy_tree(&from.join(&n), &to.join(&n), owner, chmod, skip)?;
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
    let mode = meta.mode() & 0o7777;
    let mode = chmod.map_or(mode, |c| c.apply(mode, meta.is_dir()));
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    let t = filetime::FileTime::from_last_modification_time(&meta);
    filetime::set_symlink_file_times(to, t, t)
}

/// The metadata of `rel` in the image being built: the topmost layer that
/// has it decides; a whiteout there means it is gone.
fn image_meta(store: &Store, state: &State, rel: &str) -> Option<fs::Metadata> {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return None;
    }
    for (_, diff_id) in state.layers.iter().rev() {
        if let Ok(m) = fs::symlink_metadata(store.snapshot_path(diff_id).join(rel)) {
            use std::os::unix::fs::FileTypeExt;
            let whiteout = m.file_type().is_char_device() && m.rdev() == 0;
            return (!whiteout).then_some(m);
        }
    }
    None
}

/// `path` with the image's symlinks in it resolved, as the kernel would
/// inside the container: absolute targets start again at the image's root,
/// and `..` never climbs above it.
pub(super) fn resolve_in_image(store: &Store, state: &State, path: &str) -> String {
    let mut todo: std::collections::VecDeque<String> =
        path.split('/').map(str::to_string).collect();
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
        let Some(meta) = image_meta(store, state, &rel) else {
            continue;
        };
        if !meta.file_type().is_symlink() || hops >= 40 {
            continue;
        }
        hops += 1;
        let target = state
            .layers
            .iter()
            .rev()
            .find_map(|(_, d)| fs::read_link(store.snapshot_path(d).join(&rel)).ok())
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

/// Makes directory `rel` under `staging` with its parents. Those the image
/// has keep its mode, owner and mtime (a layer must not change them); new
/// ones are 0755 and owned by `owner`, as BuildKit makes them.
pub(super) fn make_parents(
    store: &Store,
    state: &State,
    staging: &Path,
    rel: &str,
    owner: (u32, u32),
) -> std::io::Result<()> {
    let mut path = staging.to_path_buf();
    let mut so_far = String::new();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        path.push(part);
        so_far = format!("{so_far}/{part}");
        if fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        fs::create_dir(&path)?;
        match image_meta(store, state, &so_far) {
            Some(m) if m.is_dir() => {
                fs::set_permissions(&path, fs::Permissions::from_mode(m.mode() & 0o7777))?;
                lchown(&path, Some(m.uid()), Some(m.gid()))?;
                let t = filetime::FileTime::from_last_modification_time(&m);
                filetime::set_symlink_file_times(&path, t, t)?;
            }
            _ => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
                lchown(&path, Some(owner.0), Some(owner.1))?;
            }
        }
    }
    Ok(())
}

/// WORKDIR's layer: the directory (resolved through the image's symlinks)
/// and its missing parents, owned by `user`; no layer when it exists.
pub(super) fn mkdir_layer(
    store: &Store,
    state: &State,
    dir: &str,
    user: &str,
) -> Result<StepResult, String> {
    let resolved = resolve_in_image(store, state, dir);
    if resolved == "/" || image_meta(store, state, &resolved).is_some_and(|m| m.is_dir()) {
        return Ok(StepResult::default());
    }
    let owner = if user.is_empty() {
        (0, 0)
    } else {
        let (passwd, group) = (
            read_image_file(store, state, "etc/passwd"),
            read_image_file(store, state, "etc/group"),
        );
        let u = user::resolve(user, &passwd, &group)?;
        (u.uid, u.gid)
    };
    let staging = store.temp_path("workdir");
    let made = fs::create_dir_all(&staging)
        .and_then(|_| make_parents(store, state, &staging, &resolved, owner));
    if let Err(e) = made {
        let _ = fs::remove_dir_all(&staging);
        return Err(format!("creating {dir}: {e}"));
    }
    commit_dir(store, &staging).map_err(|e| e.to_string())
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

/// Stages and images flattened into directories for `COPY --from` and
/// `RUN --mount=from=`: each once per build, whatever the number of steps
/// that read it, and removed when the build is done.
#[derive(Default)]
pub(super) struct Flattened {
    dirs: std::sync::Mutex<std::collections::HashMap<String, PathBuf>>,
}

impl Drop for Flattened {
    fn drop(&mut self) {
        let dirs = self.dirs.get_mut().unwrap_or_else(|e| e.into_inner());
        for dir in dirs.values() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

impl Flattened {
    /// The directory of stage or image `from` (read it, never write it).
    pub(super) fn get(
        &self,
        store: &Store,
        built: &[Option<State>],
        stages: &[Stage],
        from: &str,
    ) -> Result<PathBuf, String> {
        let lower = from.to_lowercase();
        let (key, layers) = match stages
            .iter()
            .position(|s| s.from.name.as_deref() == Some(lower.as_str()))
            .or_else(|| from.parse().ok())
        {
            Some(i) => built
                .get(i)
                .and_then(|b| b.as_ref())
                .map(|s| (s.key.clone(), s.layers.clone()))
                .ok_or_else(|| format!("stage {from} is not built yet"))?,
            None => {
                let image = crate::image::Image::resolve(store, from).map_err(|_| {
                    format!("--from={from}: no such stage, and no such image in the store")
                })?;
                (image.id.to_string(), image.layers())
            }
        };
        // Held while flattening: two steps wanting the same stage wait for
        // one copy rather than make two.
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = dirs.get(&key) {
            return Ok(dir.clone());
        }
        let dir = store.temp_path("from");
        let made = (|| -> Result<(), String> {
            fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            for (desc, _) in layers {
                let digest = crate::image::manifest_digest(&desc).map_err(|e| e.to_string())?;
                let blob = store
                    .open_blob(&digest)
                    .map_err(|e: crate::store::StoreError| e.to_string())?;
                layer::apply(blob, &dir, Mode::Flatten).map_err(|e| e.to_string())?;
            }
            Ok(())
        })();
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        dirs.insert(key, dir.clone());
        Ok(dir)
    }
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

#[cfg(test)]
mod chmod_tests {
    use super::Chmod;

    #[test]
    fn symbolic_modes_apply_to_each_files_own_mode() {
        let c = Chmod::parse("u+x,g-w,o=").unwrap();
        assert_eq!(c.apply(0o664, false), 0o740);
        let c = Chmod::parse("a+X").unwrap();
        assert_eq!(c.apply(0o644, false), 0o644, "X: files without x stay");
        assert_eq!(c.apply(0o744, false), 0o755);
        assert_eq!(c.apply(0o700, true), 0o711, "X: directories get x");
        assert_eq!(Chmod::parse("=r").unwrap().apply(0o777, false), 0o444);
        assert_eq!(Chmod::parse("u+s,+t").unwrap().apply(0o755, false), 0o5755);
        assert_eq!(Chmod::parse("0755").unwrap().apply(0o600, false), 0o755);
        for bad in ["u+q", "k+x", "rwx", "99999"] {
            assert!(Chmod::parse(bad).is_err(), "{bad}");
        }
    }
}
