//! COPY and ADD: sources from the context (minus .dockerignore), another
//! stage, or a heredoc; Docker's destination rules; owners and modes; ADD's
//! local tar extraction. The cache key hashes names, modes and contents,
//! never mtimes, so a fresh checkout of the same context hits the cache.

use super::explain::KeyInputs;
use super::{Builder, State, StepCx, StepError, StepResult, commit_dir, fail, hash};
use crate::context::digest::StatCache;
use crate::context::ignore::Matcher;
use crate::copier::{self, Layers};
use crate::dockerfile::chmod::Chmod;
use crate::dockerfile::heredoc;
use crate::dockerfile::instructions::{self, Copy, SourceKind, Stage};
use crate::layer::{self, Mode};
use crate::sandbox::fs::{Root, remove_dir_all};
use crate::store::Store;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

type Run<'a> = Box<dyn FnOnce() -> Result<StepResult, StepError> + 'a>;

/// A resolved source: the root it is in, its path there (symlinks
/// resolved inside that root), and its name as the pattern matched it.
struct Source {
    root: Arc<Root>,
    rel: String,
    name: String,
    /// Leading components of `name` that `--parents` leaves out (those
    /// before a `/./` in the pattern).
    strip: usize,
    /// Downloaded by ADD from a URL: written 0600, never extracted.
    remote: bool,
}

/// `--chmod`: octal, or symbolic clauses applied to each file's own mode.
/// What a COPY leaves out: `.dockerignore`d context paths and `--exclude`
/// patterns, matched against the path from the source root and from the
/// source being copied.
struct Filter<'a> {
    ignore: Option<&'a Matcher>,
    exclude: Option<Matcher>,
}

impl Filter<'_> {
    /// What of `rel` (a path from the source root), found under the
    /// source `base` (also from the root), is copied.
    fn take(&self, base: &str, rel: &str) -> copier::Take {
        use copier::Take;
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() {
            return Take::Entry;
        }
        let mut take = Take::Entry;
        if let Some(m) = self.ignore
            && m.is_ignored(rel)
        {
            if !m.may_take_below(rel) {
                return Take::Nothing;
            }
            take = Take::Below;
        }
        let base = base.trim_start_matches('/');
        let below = match base.is_empty() {
            true => Some(rel),
            false => rel
                .strip_prefix(base)
                .and_then(|r| r.strip_prefix('/'))
                .filter(|r| !r.is_empty()),
        };
        let excluded = |ex: &Matcher, r: &str| ex.is_ignored(r) && !ex.may_take_below(r);
        match &self.exclude {
            Some(ex) if [Some(rel), below].iter().flatten().any(|r| excluded(ex, r)) => {
                Take::Nothing
            }
            Some(ex)
                if [Some(rel), below]
                    .iter()
                    .flatten()
                    .any(|r| ex.is_ignored(r)) =>
            {
                Take::Below
            }
            _ => take,
        }
    }
}

/// The step's cache key and the work that makes its layer (run on a miss).
pub(super) fn step<'a>(
    b: &'a Builder<'a>,
    cx: &StepCx<'a>,
    state: &'a State,
    c: &'a Copy,
    add: bool,
) -> Result<(KeyInputs, Run<'a>), StepError> {
    let (store, built, stages) = (b.store, cx.built, b.stages());
    let vars = super::variables(state);
    let expand = |w: &str| super::expand_word(&vars, b.escape(), w);
    let kw = if add { "ADD" } else { "COPY" };
    // `--link` makes a layer that does not depend on what is below it: it
    // is written as onto an empty image, and its key leaves the parent out.
    let view = if c.link {
        State {
            config: state.config.clone(),
            layers: Vec::new(),
            key: hash(&["link"]),
            cmd_set: false,
            args: Default::default(),
            declared: Vec::new(),
            since_layer: Vec::new(),
        }
    } else {
        state.clone()
    };
    let image = layers_of(store, &view).map_err(|e| fail(format!("{kw}: {e}")))?;

    // A destination that expands to nothing is the WORKDIR, as in BuildKit.
    let dest_raw = match expand(&c.dest)? {
        d if d.is_empty() => "./".to_string(),
        d => d,
    };
    let joined = state.in_workdir(&dest_raw);
    // `.` and a trailing `/.` name a directory, like a trailing `/`.
    let names_dir =
        dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.") || c.parents;
    let dest: String = image.resolve(&joined);
    let chown = c.chown.as_deref().map(&expand).transpose()?;
    let chmod = match c.chmod.as_deref().map(&expand).transpose()? {
        Some(m) => Some(Chmod::parse(&m).map_err(fail)?),
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
                    .map_err(|e| fail(e.to_string()))?,
            )
        }
    };

    // Where sources come from, and the ignore file that applies there:
    // the context's, or a named directory's own.
    let (root, from_context, ignore) = match &c.from {
        Some(from) => {
            let from = expand(from)?;
            let root = b
                .flattened
                .get(store, built, stages, cx.stage, &from)
                .map_err(fail)?;
            (root, false, b.flattened.ignore_of(&from))
        }
        None => (b.prepared.context.clone(), true, Some(&b.prepared.ignore)),
    };
    // Downloads are removed when the work is done or dropped unrun (a
    // cache hit).
    let mut cleanup = Cleanup(Vec::new());
    let filter = Filter { ignore, exclude };
    let checksum = c.checksum.as_deref().map(&expand).transpose()?;
    let mut sources = Vec::new();
    // Heredoc sources as (file name, content): an unquoted opener's body is
    // expanded with the stage's variables, as BuildKit's dispatcher does.
    let lookup = |k: &str| vars.get(k);
    let mut heredocs = Vec::new();
    for h in &c.heredocs {
        let content = match h.expand {
            true => heredoc::expand(&h.content, &lookup)
                .map_err(|e| fail(format!("{kw} <<{}: {e}", h.name)))?,
            false => h.content.clone(),
        };
        heredocs.push((h.name.clone(), content));
    }
    let mut unmatched = Vec::new();
    for raw in &c.sources {
        // An opener names one of `heredocs`: no path.
        if heredoc::parse(raw).is_some() {
            continue;
        }
        let pattern = expand(raw)?;
        let kind = instructions::source_kind(&pattern);
        if add && kind == SourceKind::Git {
            return Err(fail(format!(
                "ADD {pattern}: git sources are not supported by kiln yet; clone in the context or a RUN step"
            )));
        }
        if add && kind == SourceKind::Http {
            let got = super::fetch::download(store, &pattern, checksum.as_deref()).map_err(fail)?;
            b.material(crate::attest::scrub(&pattern), got.digest.clone());
            cleanup.0.push(got.path.clone());
            // The download is a file kiln wrote in its own tmp/.
            let dir = got.path.parent().unwrap_or(store.root());
            let file = got.path.file_name().unwrap_or_default().to_string_lossy();
            let root = Root::open(dir)
                .map(Arc::new)
                .map_err(|e| fail(format!("{kw}: {e}")))?;
            sources.push(Source {
                root,
                rel: file.into_owned(),
                name: got.name,
                strip: 0,
                remote: true,
            });
            continue;
        }
        if checksum.is_some() {
            return Err(fail(
                "--checksum applies to http(s) sources only".to_string(),
            ));
        }
        let mut found = Vec::new();
        let matches = match c.parents {
            true => copier::find_parents(&root, &pattern),
            false => copier::find(&root, &pattern),
        };
        for m in matches {
            // `--exclude` leaves out what is below a matched directory,
            // never the directory itself (`ADD --exclude=* dir* /d` makes
            // an empty /d); `.dockerignore` leaves out either.
            let is_dir = root.stat(&m.name).is_ok_and(|m| m.is_dir());
            let dropped = match is_dir {
                true => Filter {
                    ignore: filter.ignore,
                    exclude: None,
                }
                .take("", &m.name),
                false => filter.take("", &m.name),
            };
            if dropped == copier::Take::Nothing {
                continue;
            }
            // A source named (or matched) is followed, inside its root.
            let Ok(rel) = root.resolve(&m.name) else {
                continue;
            };
            found.push(Source {
                root: root.clone(),
                rel,
                name: m.name,
                strip: m.strip,
                remote: false,
            });
        }
        // A wildcard that matches nothing beside sources that match is no
        // error (BuildKit); a plain name that is missing is. A `--parents`
        // wildcard may match nothing at all (BuildKit requires only a
        // path without wildcards to exist).
        if found.is_empty() && c.parents && pattern.contains(['*', '?', '[']) {
            continue;
        }
        if found.is_empty() && pattern.contains(['*', '?', '[']) {
            unmatched.push(pattern);
            continue;
        }
        if found.is_empty() {
            return Err(fail(format!(
                "{kw} failed: \"{pattern}\": not found in the {}",
                if from_context {
                    "build context (or excluded by .dockerignore)"
                } else {
                    "source stage"
                }
            )));
        }
        sources.extend(found);
    }
    if let Some(pattern) = unmatched.first()
        && sources.is_empty()
        && heredocs.is_empty()
    {
        return Err(fail(format!(
            "{kw} failed: no source files were specified: \"{pattern}\" matches nothing in the {}",
            if from_context {
                "build context (or everything it matches is excluded by .dockerignore)"
            } else {
                "source stage"
            }
        )));
    }
    let count = sources.len() + heredocs.len();
    let dest_is_dir = names_dir
        || count > 1
        || (sources.len() == 1
            && sources[0]
                .root
                .stat(&sources[0].rel)
                .is_ok_and(|m| m.is_dir()))
        || image.is_dir(&dest);
    // Several sources written (not matched: `ADD *.tar /dest` may match
    // several) need a directory destination, as docker's builder says.
    if c.sources.len() > 1 && !names_dir {
        return Err(fail(format!(
            "When using {kw} with more than one source file, the destination must be a directory and end with a /"
        )));
    }

    let no_stat = StatCache::none();
    let context_modes = b.opts.context_modes;
    let context_perm = move |m: u32, is_dir: bool| context_modes.apply(m, is_dir);
    let parts = vec![
        ("parent", view.key.clone()),
        ("", kw.to_string()),
        ("destination", dest.clone()),
        ("--chown", format!("{chown:?}")),
        ("--chmod", format!("{chmod:?}")),
        ("--from", format!("{:?}", c.from)),
        (
            "--exclude, --parents, --link",
            format!("{:?} {:?} {}", c.exclude, c.parents, c.link),
        ),
        ("--unpack", format!("unpack {:?}", c.unpack)),
    ];
    let mut files = Vec::new();
    let mut names = Vec::new();
    for s in &sources {
        names.push((
            format!("source {}", s.name),
            format!("{} {} {}", s.name, s.strip, s.remote),
        ));
        let (digests, perm): (_, &dyn Fn(u32, bool) -> u32) = if from_context && !s.remote {
            (&b.stat, &context_perm)
        } else {
            (&no_stat, &|m, _| m)
        };
        // The walk is given the source's real path (no symlink in it) and
        // never follows a symlink below it.
        let base = s
            .root
            .real_path("")
            .map_err(|e| fail(format!("{kw}: {e}")))?;
        let real = s
            .root
            .real_path(&s.rel)
            .map_err(|e| fail(format!("{kw}: {}: {e}", s.name)))?;
        let rel_of = |p: &Path| {
            p.strip_prefix(&base)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        // The walk names entries from the source: the filter wants them
        // from the context.
        let under = rel_of(&real);
        let skip = |r: &str| {
            let rel = match (under.as_str(), r) {
                (u, "") => u.to_string(),
                ("", r) => r.to_string(),
                (u, r) => format!("{u}/{r}"),
            };
            filter.take(&s.rel, &rel) == copier::Take::Nothing
        };
        names.push((
            format!("source content {}", s.name),
            digests.tree_digest(&real, &skip, perm),
        ));
        // A miss explained names the file: the tree's entries, by path
        // (the stat cache makes the second walk cheap).
        if b.opts.explain {
            let under = s.rel.trim_matches('/').trim_start_matches("./");
            for (rel, value) in digests.tree_listing(&real, &skip, perm) {
                let path = match (under, rel.as_str()) {
                    ("" | ".", r) => r.to_string(),
                    (u, "") => u.to_string(),
                    (u, r) => format!("{u}/{r}"),
                };
                files.push((
                    format!("file {}", if path.is_empty() { "." } else { &path }),
                    value,
                ));
            }
        }
    }
    for (name, content) in &heredocs {
        names.push((format!("heredoc {name}"), name.clone()));
        names.push((format!("heredoc {name} content"), content.clone()));
    }
    let mut inputs = KeyInputs::new(
        parts
            .into_iter()
            .chain(names.iter().map(|(n, v)| (n.as_str(), v.clone())))
            .collect(),
    );
    for (name, value) in files {
        inputs.detail(name, value);
    }

    let work: Run<'a> = Box::new(move || {
        let _cleanup = cleanup;
        let io_fail = |e: std::io::Error| fail(format!("{kw}: {e}"));
        let chowned = match &chown {
            Some(spec) => Some(image.owner(spec).map_err(fail)?),
            None => None,
        };
        // Without --chown, files from the context (and downloads) belong
        // to root; files from a stage or image keep their owners.
        let owner = chowned.or(from_context.then_some((0, 0)));
        let parents_owner = chowned.unwrap_or((0, 0));
        let parents_mode = match &chmod {
            Some(Chmod::Octal(m)) => *m,
            _ => 0o755,
        };
        let staging_path = store.temp_path("copy");
        let staging = Root::create(&staging_path).map_err(io_fail)?;
        let target = dest.trim_start_matches('/').to_string();
        let dest_dir = if dest_is_dir {
            target.clone()
        } else {
            target
                .rsplit_once('/')
                .map(|(p, _)| p.to_string())
                .unwrap_or_default()
        };
        let within = |a: &str, b: &str| match (a.is_empty(), b.is_empty()) {
            (true, _) => b.to_string(),
            (_, true) => a.to_string(),
            _ => format!("{a}/{b}"),
        };
        image
            .make_parents(&staging, &dest_dir, parents_owner, parents_mode)
            .map_err(io_fail)?;
        let links = copier::Links::default();
        for s in &sources {
            let meta = s.root.stat(&s.rel).map_err(io_fail)?;
            let to = if !dest_is_dir {
                target.clone()
            } else if c.parents {
                let kept: Vec<&str> = s.name.split('/').skip(s.strip).collect();
                let to = within(&dest_dir, &kept.join("/"));
                if let Some((parent, _)) = to.rsplit_once('/') {
                    image
                        .make_parents(&staging, parent, parents_owner, parents_mode)
                        .map_err(io_fail)?;
                }
                to
            } else if meta.is_dir() {
                dest_dir.clone()
            } else {
                let base = s.name.rsplit('/').next().unwrap_or(&s.name);
                within(&dest_dir, base)
            };
            if add
                && !s.remote
                && meta.is_file()
                && c.unpack != Some(false)
                && let Some(tar) = tar_archive(store, &s.root, &s.rel).map_err(io_fail)?
            {
                // An archive is extracted into the destination, a directory
                // even without a trailing slash (`ADD *.tar /dst`). It is
                // made inside the staging root; the layer reader refuses
                // entries that leave it.
                let into = if dest_is_dir { &dest_dir } else { &target };
                image
                    .make_parents(&staging, into, parents_owner, parents_mode)
                    .map_err(io_fail)?;
                // Extracted apart, then placed entry by entry through the
                // image's symlinks (`var/run/x` lands in /run/x when the
                // image has /var/run -> /run), as an unpack onto the image
                // would: the layer keeps the image's links.
                let unpacked = store.temp_path("add");
                let extracted = fs::create_dir(&unpacked)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        layer::apply(tar.reader, &unpacked, Mode::Flatten)
                            .map_err(|e| e.to_string())
                    });
                if let Some(temp) = tar.temp {
                    let _ = fs::remove_file(temp);
                }
                let placed = extracted.and_then(|_| {
                    let src = Root::open(&unpacked).map_err(|e| e.to_string())?;
                    place_archive(&src, "", &staging, &image, into, chowned, &links)
                        .map_err(|e| e.to_string())
                });
                let _ = remove_dir_all(&unpacked);
                placed.map_err(|e| fail(format!("ADD: extracting {}: {e}", s.name)))?;
                continue;
            }
            let chmod = match (&chmod, s.remote) {
                (None, true) => Some(Chmod::Octal(0o600)),
                (c, _) => c.clone(),
            };
            // --chmod, else the modes --context-modes gives context files.
            let modes = Some(b.opts.context_modes)
                .filter(|m| from_context && !s.remote && *m != super::ContextModes::Docker);
            // A symbolic --chmod (`o+w`) works on the mode the key saw.
            let mode = |m: u32, is_dir: bool| {
                let m = modes.map_or(m, |modes| modes.apply(m, is_dir));
                chmod.as_ref().map_or(m, |c| c.apply(m, is_dir))
            };
            let take = |rel: &str| filter.take(&s.rel, rel);
            let opts = copier::CopyOptions {
                owner,
                mode: (chmod.is_some() || modes.is_some())
                    .then_some(&mode as &dyn Fn(u32, bool) -> u32),
                take: &take,
                links: &links,
            };
            if !meta.is_dir() {
                copier::copy_tree(&s.root, &s.rel, &staging, &to, &opts).map_err(io_fail)?;
                continue;
            }
            // A directory's contents are copied; the directory it lands in
            // keeps the image's metadata, or is made 0755 and owned by
            // --chown, as BuildKit makes it (--chmod is not applied to it).
            image
                .make_parents(&staging, &to, parents_owner, 0o755)
                .map_err(io_fail)?;
            for n in s.root.read_dir(&s.rel).map_err(io_fail)? {
                let n = n.to_string_lossy();
                let from = within(s.rel.trim_start_matches('/'), &n);
                copier::copy_tree(&s.root, &from, &staging, &within(&to, &n), &opts)
                    .map_err(io_fail)?;
            }
        }
        for (name, content) in &heredocs {
            let to = if dest_is_dir {
                within(&dest_dir, name)
            } else {
                target.clone()
            };
            let mut file = staging.create_file(&to, 0o600).map_err(io_fail)?;
            std::io::Write::write_all(&mut file, content.as_bytes()).map_err(io_fail)?;
            let mode = chmod.as_ref().map_or(0o644, |c| c.apply(0o644, false));
            staging
                .chown(&to, parents_owner.0, parents_owner.1)
                .map_err(io_fail)?;
            staging.chmod(&to, mode).map_err(io_fail)?;
        }
        Ok(commit_dir(store, &staging_path, b.epoch())?)
    });
    Ok((inputs, work))
}

/// The image `state` describes, seen through its layer snapshots.
pub(super) fn layers_of(store: &Store, state: &State) -> std::io::Result<Layers> {
    let snapshots: Vec<PathBuf> = state
        .layers
        .iter()
        .map(|(_, d)| store.snapshot_path(d))
        .collect();
    Layers::open(&snapshots)
}

/// Removes temporary files and directories when dropped.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in self.0.drain(..) {
            let _ = remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
    }
}

/// A tar archive ADD extracts: its (decompressed) stream, and a temporary
/// file to remove afterwards.
struct TarArchive {
    reader: Box<dyn Read>,
    temp: Option<PathBuf>,
}

/// Places what an archive held (extracted in `src`, below `rel`) into
/// `staging` under `into`, each directory's path resolved through the
/// image's symlinks first. `--chown` (`owner`) owns every entry, as
/// BuildKit's unpack with a user does; otherwise the archive's owners stay.
fn place_archive(
    src: &Root,
    rel: &str,
    staging: &Root,
    image: &Layers,
    into: &str,
    owner: Option<(u32, u32)>,
    links: &copier::Links,
) -> std::io::Result<()> {
    // Directories to visit, as (path in the archive, path in the layer).
    let mut todo = vec![(rel.to_string(), into.to_string())];
    while let Some((from, to)) = todo.pop() {
        for name in src.read_dir(&from)? {
            let name = name.to_string_lossy();
            let child = match from.is_empty() {
                true => name.to_string(),
                false => format!("{from}/{name}"),
            };
            let joined = match to.is_empty() {
                true => name.to_string(),
                false => format!("{to}/{name}"),
            };
            let is_dir = src.lstat(&child)?.is_dir();
            // Only a directory is entered through the image's symlinks; any
            // other entry replaces what is at its name, as tar does (`to`
            // is already resolved), and needs no walk of the layers.
            let target = match is_dir {
                true => image
                    .resolve(&format!("/{joined}"))
                    .trim_start_matches('/')
                    .to_string(),
                false => joined,
            };
            // A directory alone (its entries are placed one by one).
            let only = child.clone();
            let take = move |r: &str| match !is_dir || r == only {
                true => copier::Take::Entry,
                false => copier::Take::Nothing,
            };
            let opts = copier::CopyOptions {
                owner,
                mode: None,
                take: &take,
                links,
            };
            // Parents once per directory, not per entry.
            if let Some((parent, _)) = target.rsplit_once('/')
                && staging.lstat(parent).is_err()
            {
                image.make_parents(staging, parent, owner.unwrap_or((0, 0)), 0o755)?;
            }
            copier::copy_tree(src, &child, staging, &target, &opts)?;
            if is_dir {
                todo.push((child, target));
            }
        }
    }
    Ok(())
}

/// The tar inside `rel` in `root`, plain or compressed with gzip, zstd, bzip2 or xz
/// (known by content, not name), as Docker's ADD extracts it; None for
/// anything else, which ADD copies as it is (a compressed file that is not
/// a tar too).
fn tar_archive(store: &Store, root: &Root, rel: &str) -> std::io::Result<Option<TarArchive>> {
    const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
    let mut head = [0u8; 6];
    let n = root.open_read(rel)?.read(&mut head)?;
    let head = &head[..n];
    let open = || root.open_read(rel).map(std::io::BufReader::new);
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

/// WORKDIR's layer: the directory (resolved through the image's symlinks)
/// and its missing parents, owned by `user`; an empty layer when it
/// exists, as BuildKit's mkdir makes one (docker 20.10's too).
pub(super) fn mkdir_layer(
    store: &Store,
    state: &State,
    dir: &str,
    user: &str,
    epoch: Option<i64>,
) -> Result<StepResult, String> {
    let image = layers_of(store, state).map_err(|e| e.to_string())?;
    let resolved = image.resolve(dir);
    if resolved == "/" || image.is_dir(&resolved) {
        let staging = store.temp_path("workdir");
        std::fs::create_dir(&staging).map_err(|e| format!("creating {dir}: {e}"))?;
        return commit_dir(store, &staging, epoch).map_err(|e| e.to_string());
    }
    let owner = if user.is_empty() {
        (0, 0)
    } else {
        image.owner(user)?
    };
    let staging = store.temp_path("workdir");
    let made =
        Root::create(&staging).and_then(|root| image.make_parents(&root, &resolved, owner, 0o755));
    if let Err(e) = made {
        let _ = remove_dir_all(&staging);
        return Err(format!("creating {dir}: {e}"));
    }
    commit_dir(store, &staging, epoch).map_err(|e| e.to_string())
}

/// Stages and images flattened into directories for `COPY --from` and
/// `RUN --mount=from=`: each once per build, whatever the number of steps
/// that read it, and removed when the build is done.
#[derive(Default)]
pub(super) struct Flattened {
    dirs: std::sync::Mutex<std::collections::HashMap<String, Arc<Root>>>,
    /// `--build-context` names: they come before stages and images.
    pub(super) named: Vec<(String, super::NamedContext)>,
    /// The `.dockerignore` of each named directory.
    ignores: std::collections::HashMap<String, Matcher>,
}

impl Drop for Flattened {
    fn drop(&mut self) {
        let dirs = self.dirs.get_mut().unwrap_or_else(|e| e.into_inner());
        for dir in dirs.values() {
            let _ = remove_dir_all(dir.path());
        }
    }
}

impl Flattened {
    /// None flattened yet; `named` are the build's `--build-context`s,
    /// a directory's `.dockerignore` read now.
    pub(super) fn with_named(
        named: Vec<(String, super::NamedContext)>,
    ) -> Result<Flattened, String> {
        let mut ignores = std::collections::HashMap::new();
        for (name, context) in &named {
            if let super::NamedContext::Dir(path) = context {
                let m = Matcher::for_build(path, None)
                    .map_err(|e| format!("build context {name}: {e}"))?;
                ignores.insert(name.clone(), m);
            }
        }
        Ok(Flattened {
            dirs: Default::default(),
            named,
            ignores,
        })
    }

    /// The `.dockerignore` of named directory `name`, if it is one.
    pub(super) fn ignore_of(&self, name: &str) -> Option<&Matcher> {
        self.ignores.get(name)
    }

    /// The root of stage or image `from`, as named in stage `stage` (read
    /// it, never write it).
    pub(super) fn get(
        &self,
        store: &Store,
        built: &[Option<State>],
        stages: &[Stage],
        stage: usize,
        from: &str,
    ) -> Result<Arc<Root>, String> {
        let named = self.named.iter().find(|(n, _)| n == from).map(|(_, c)| c);
        // A named directory is read where it is (never copied, never
        // removed with the flattened trees).
        if let Some(super::NamedContext::Dir(path)) = named {
            return Root::open(path)
                .map(Arc::new)
                .map_err(|e| format!("build context {from} ({}): {e}", path.display()));
        }
        let found = match named {
            Some(super::NamedContext::Image(_) | super::NamedContext::OciLayout { .. }) => None,
            _ => crate::plan::from_ref(stages, stage, from),
        };
        let image_ref = match named {
            Some(super::NamedContext::Image(r)) => r.as_str(),
            _ => from,
        };
        let (key, layers) = match (found, named) {
            (Some(i), _) => built
                .get(i)
                .and_then(|b| b.as_ref())
                .map(|s| (s.key.clone(), s.layers.clone()))
                .ok_or_else(|| format!("stage {from} is not built yet"))?,
            (None, Some(super::NamedContext::OciLayout { path, reference })) => {
                let image = crate::image::archive::load_layout(store, path, reference.as_deref())
                    .map_err(|e| format!("build context {from}: {e}"))?;
                (image.id.to_string(), image.layers())
            }
            (None, _) => {
                let image = crate::image::Image::resolve(store, image_ref).map_err(|_| {
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
        let root = made.and_then(|()| Root::open(&dir).map_err(|e| e.to_string()));
        match root {
            Ok(root) => {
                let root = Arc::new(root);
                dirs.insert(key, root.clone());
                Ok(root)
            }
            Err(e) => {
                let _ = remove_dir_all(&dir);
                Err(e)
            }
        }
    }
}
