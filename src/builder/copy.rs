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
    exclude: Option<&'a Matcher>,
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
        match self.exclude {
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

/// A COPY or ADD with its words expanded, before any source is looked
/// at: what it asks.
struct Request {
    /// `COPY` or `ADD`, as errors name it.
    kw: &'static str,
    add: bool,
    /// The destination, from the root, through the image's symlinks.
    dest: String,
    /// True when the destination as written names a directory (a
    /// trailing `/`, `.`, `/.`, or `--parents`).
    names_dir: bool,
    chown: Option<String>,
    chmod: Option<Chmod>,
    exclude: Option<Matcher>,
    checksum: Option<String>,
    /// `--from`, expanded.
    from: Option<String>,
    /// `--parents`.
    parents: bool,
    /// `--unpack`: ADD extracts local archives unless false.
    unpack: Option<bool>,
    /// Source words as written, heredoc openers included (more than one
    /// needs a directory destination).
    written: usize,
    /// The source patterns, expanded (heredoc openers left out).
    patterns: Vec<String>,
    /// Heredoc sources as (file name, content).
    heredocs: Vec<(String, String)>,
}

impl Request {
    /// Expands `c`'s words with `expand` (heredoc bodies with `vars`);
    /// `workdir` places a relative destination, `image` resolves it.
    fn new(
        c: &Copy,
        add: bool,
        expand: &dyn Fn(&str) -> Result<String, StepError>,
        vars: &crate::plan::Scope,
        workdir: &dyn Fn(&str) -> String,
        image: &Layers,
    ) -> Result<Request, StepError> {
        let kw = if add { "ADD" } else { "COPY" };
        // A destination that expands to nothing is the WORKDIR, as in BuildKit.
        let dest_raw = match expand(&c.dest)? {
            d if d.is_empty() => "./".to_string(),
            d => d,
        };
        // `.` and a trailing `/.` name a directory, like a trailing `/`.
        let names_dir =
            dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.") || c.parents;
        let dest = image.resolve(&workdir(&dest_raw));
        let chown = c.chown.as_deref().map(expand).transpose()?;
        let chmod = match c.chmod.as_deref().map(expand).transpose()? {
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
        let from = c.from.as_deref().map(expand).transpose()?;
        let checksum = c.checksum.as_deref().map(expand).transpose()?;
        // An unquoted opener's body is expanded with the stage's
        // variables, as BuildKit's dispatcher does.
        let mut heredocs = Vec::new();
        for h in &c.heredocs {
            let content = match h.expand {
                true => heredoc::expand(&h.content, &|k| vars.get(k))
                    .map_err(|e| fail(format!("{kw} <<{}: {e}", h.name)))?,
                false => h.content.clone(),
            };
            heredocs.push((h.name.clone(), content));
        }
        let patterns = c
            .sources
            .iter()
            .filter(|raw| heredoc::parse(raw).is_none())
            .map(|raw| expand(raw))
            .collect::<Result<_, _>>()?;
        Ok(Request {
            kw,
            add,
            dest,
            names_dir,
            chown,
            chmod,
            exclude,
            checksum,
            from,
            parents: c.parents,
            unpack: c.unpack,
            written: c.sources.len(),
            patterns,
            heredocs,
        })
    }
}

/// Where a COPY's sources are: a root, whether it is the build context,
/// and the ignore file that applies there.
struct Origin<'a> {
    root: Arc<Root>,
    context: bool,
    ignore: Option<&'a Matcher>,
}

/// The sources a COPY found, and what that decides.
struct Found {
    sources: Vec<Source>,
    /// True when the destination is a directory the sources go into.
    dest_is_dir: bool,
    /// Downloads, removed when the work is done or dropped unrun (a hit).
    cleanup: Cleanup,
}

/// Finds `req`'s sources in `origin` (ADD's URLs downloaded into
/// `store`'s tmp, each told to `material`); `image` is the image copied
/// onto. Errors as BuildKit's: a missing name, a wildcard matching
/// nothing at all, several sources onto a file.
fn resolve(
    store: &Store,
    req: &Request,
    origin: &Origin,
    image: &Layers,
    material: &dyn Fn(String, crate::store::Digest),
) -> Result<Found, StepError> {
    let (kw, root) = (req.kw, &origin.root);
    let filter = Filter {
        ignore: origin.ignore,
        exclude: req.exclude.as_ref(),
    };
    let mut cleanup = Cleanup(Vec::new());
    let mut sources = Vec::new();
    let mut unmatched = Vec::new();
    for pattern in &req.patterns {
        let kind = instructions::source_kind(pattern);
        if req.add && kind == SourceKind::Git {
            return Err(fail(format!(
                "ADD {pattern}: git sources are not supported by kiln yet; clone in the context or a RUN step"
            )));
        }
        if req.add && kind == SourceKind::Http {
            let got = super::fetch::download(store, pattern, req.checksum.as_deref())
                .map_err(|e| fail(format!("ADD {pattern}: {e}")))?;
            material(crate::attest::scrub(pattern), got.digest.clone());
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
        if req.checksum.is_some() {
            return Err(fail(
                "--checksum applies to http(s) sources only".to_string(),
            ));
        }
        let mut found = Vec::new();
        let matches = match req.parents {
            true => copier::find_parents(root, pattern),
            false => copier::find(root, pattern),
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
        let wildcard = pattern.contains(['*', '?', '[']);
        if found.is_empty() && req.parents && wildcard {
            continue;
        }
        if found.is_empty() && wildcard {
            unmatched.push(pattern.clone());
            continue;
        }
        if found.is_empty() {
            return Err(fail(format!(
                "{kw} failed: \"{pattern}\": not found in the {}",
                if origin.context {
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
        && req.heredocs.is_empty()
    {
        return Err(fail(format!(
            "{kw} failed: no source files were specified: \"{pattern}\" matches nothing in the {}",
            if origin.context {
                "build context (or everything it matches is excluded by .dockerignore)"
            } else {
                "source stage"
            }
        )));
    }
    let count = sources.len() + req.heredocs.len();
    let dest_is_dir = req.names_dir
        || count > 1
        || (sources.len() == 1
            && sources[0]
                .root
                .stat(&sources[0].rel)
                .is_ok_and(|m| m.is_dir()))
        || image.is_dir(&req.dest);
    // Several sources written (not matched: `ADD *.tar /dest` may match
    // several) need a directory destination, as docker's builder says.
    if req.written > 1 && !req.names_dir {
        return Err(fail(format!(
            "When using {kw} with more than one source file, the destination must be a directory and end with a /"
        )));
    }
    Ok(Found {
        sources,
        dest_is_dir,
        cleanup,
    })
}

/// A source's content as its key sees it: the tree digest (names,
/// modes, contents, never mtimes) and, when misses are explained, each
/// file's digest by path.
struct Content {
    digest: String,
    files: Vec<(String, String)>,
}

/// How the content of sources is read for keys.
struct Digests<'a> {
    /// The context's stat cache (what is not from the context is walked
    /// fresh).
    stat: &'a StatCache,
    /// The modes context files get (`--context-modes`).
    modes: super::ContextModes,
    /// True when misses are explained (the files are listed).
    explain: bool,
}

/// The content of source `s` (from the context when `context`), less
/// what `filter` leaves out.
fn content(
    kw: &str,
    s: &Source,
    context: bool,
    filter: &Filter,
    d: &Digests,
) -> Result<Content, StepError> {
    let no_stat = StatCache::none();
    let modes = d.modes;
    let context_perm = move |m: u32, is_dir: bool| modes.apply(m, is_dir);
    let (digests, perm): (_, &dyn Fn(u32, bool) -> u32) = if context && !s.remote {
        (d.stat, &context_perm)
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
    // The walk names entries from the source: the filter wants them from
    // the source's root.
    let under = real
        .strip_prefix(&base)
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_default();
    let skip = |r: &str| {
        let rel = match (under.as_str(), r) {
            (u, "") => u.to_string(),
            ("", r) => r.to_string(),
            (u, r) => format!("{u}/{r}"),
        };
        filter.take(&s.rel, &rel) == copier::Take::Nothing
    };
    let digest = digests.tree_digest(&real, &skip, perm);
    // A miss explained names the file: the tree's entries, by path (the
    // stat cache makes the second walk cheap).
    let mut files = Vec::new();
    if d.explain {
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
    Ok(Content { digest, files })
}

/// The inputs of a COPY's key: the key of what it is copied onto
/// (`parent`), what it asks, each source's name and `contents` (in the
/// order of `found`), its heredocs; the files of the contents as details
/// an explained miss names.
fn key_inputs(
    parent: &str,
    c: &Copy,
    req: &Request,
    found: &Found,
    contents: Vec<Content>,
) -> KeyInputs {
    let mut parts = vec![
        ("parent", parent.to_string()),
        ("", req.kw.to_string()),
        ("destination", req.dest.clone()),
        ("--chown", format!("{:?}", req.chown)),
        ("--chmod", format!("{:?}", req.chmod)),
        ("--from", format!("{:?}", c.from)),
        (
            "--exclude, --parents, --link",
            format!("{:?} {:?} {}", c.exclude, c.parents, c.link),
        ),
        ("--unpack", format!("unpack {:?}", c.unpack)),
    ];
    let mut names = Vec::new();
    let mut files = Vec::new();
    for (s, content) in found.sources.iter().zip(contents) {
        names.push((
            format!("source {}", s.name),
            format!("{} {} {}", s.name, s.strip, s.remote),
        ));
        names.push((format!("source content {}", s.name), content.digest));
        files.extend(content.files);
    }
    for (name, content) in &req.heredocs {
        names.push((format!("heredoc {name}"), name.clone()));
        names.push((format!("heredoc {name} content"), content.clone()));
    }
    parts.extend(names.iter().map(|(n, v)| (n.as_str(), v.clone())));
    let mut inputs = KeyInputs::new(parts);
    for (name, value) in files {
        inputs.detail(name, value);
    }
    inputs
}

/// The step's cache key and the work that makes its layer (run on a
/// miss): the request expanded, its sources resolved, its key computed
/// from them; the copy itself waits for a miss.
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
        State::fresh(state.config.clone(), hash(&["link"]))
    } else {
        state.clone()
    };
    let image = layers_of(store, &view).map_err(|e| fail(format!("{kw}: {e}")))?;
    let req = Request::new(c, add, &expand, &vars, &|d| state.in_workdir(d), &image)?;
    // Where sources come from, and the ignore file that applies there:
    // the context's, or a named directory's own.
    let origin = match &req.from {
        Some(from) => Origin {
            root: b
                .flattened
                .get(store, built, stages, cx.stage, from)
                .map_err(fail)?,
            context: false,
            ignore: b.flattened.ignore_of(from),
        },
        None => Origin {
            root: b.prepared.context.clone(),
            context: true,
            ignore: Some(&b.prepared.ignore),
        },
    };
    let found = resolve(store, &req, &origin, &image, &|uri, digest| {
        b.material(uri, digest)
    })?;
    let filter = Filter {
        ignore: origin.ignore,
        exclude: req.exclude.as_ref(),
    };
    let digests = Digests {
        stat: &b.stat,
        modes: b.opts.context_modes,
        explain: b.opts.explain,
    };
    let contents = found
        .sources
        .iter()
        .map(|s| content(kw, s, origin.context, &filter, &digests))
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = key_inputs(&view.key, c, &req, &found, contents);
    let (modes, epoch) = (b.opts.context_modes, b.epoch());
    let work: Run<'a> = Box::new(move || {
        let done = copy(store, &image, &req, &found, &origin, modes);
        drop(found.cleanup);
        let staging = done?;
        Ok(commit_dir(store, &staging, epoch)?)
    });
    Ok((inputs, work))
}

/// Copies `found` as `req` asks onto `image` into a staging directory
/// of `store`'s tmp, whose path it returns: the step's diff.
fn copy(
    store: &Store,
    image: &Layers,
    req: &Request,
    found: &Found,
    origin: &Origin,
    context_modes: super::ContextModes,
) -> Result<PathBuf, StepError> {
    let (kw, add, from_context) = (req.kw, req.add, origin.context);
    let dest_is_dir = found.dest_is_dir;
    let filter = Filter {
        ignore: origin.ignore,
        exclude: req.exclude.as_ref(),
    };
    let io_fail = |e: std::io::Error| fail(format!("{kw}: {e}"));
    let chowned = match &req.chown {
        Some(spec) => Some(image.owner(spec).map_err(fail)?),
        None => None,
    };
    // Without --chown, files from the context (and downloads) belong to
    // root; files from a stage or image keep their owners.
    let owner = chowned.or(from_context.then_some((0, 0)));
    let parents_owner = chowned.unwrap_or((0, 0));
    let parents_mode = match &req.chmod {
        Some(Chmod::Octal(m)) => *m,
        _ => 0o755,
    };
    let staging_path = store.temp_path("copy");
    let staging = Root::create(&staging_path).map_err(io_fail)?;
    let target = req.dest.trim_start_matches('/').to_string();
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
    for s in &found.sources {
        let meta = s.root.stat(&s.rel).map_err(io_fail)?;
        let to = if !dest_is_dir {
            target.clone()
        } else if req.parents {
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
            && req.unpack != Some(false)
            && let Some(tar) = tar_archive(store, &s.root, &s.rel).map_err(io_fail)?
        {
            // An archive is extracted into the destination, a directory
            // even without a trailing slash (`ADD *.tar /dst`). It is made
            // inside the staging root; the layer reader refuses entries
            // that leave it.
            let into = if dest_is_dir { &dest_dir } else { &target };
            image
                .make_parents(&staging, into, parents_owner, parents_mode)
                .map_err(io_fail)?;
            // Extracted apart, then placed entry by entry through the
            // image's symlinks (`var/run/x` lands in /run/x when the image
            // has /var/run -> /run), as an unpack onto the image would:
            // the layer keeps the image's links.
            let unpacked = store.temp_path("add");
            let extracted = fs::create_dir(&unpacked)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    layer::apply(tar.reader, &unpacked, Mode::Flatten).map_err(|e| e.to_string())
                });
            if let Some(temp) = tar.temp {
                let _ = fs::remove_file(temp);
            }
            let placed = extracted.and_then(|_| {
                let src = Root::open(&unpacked).map_err(|e| e.to_string())?;
                place_archive(&src, "", &staging, image, into, chowned, &links)
                    .map_err(|e| e.to_string())
            });
            let _ = remove_dir_all(&unpacked);
            placed.map_err(|e| fail(format!("ADD: extracting {}: {e}", s.name)))?;
            continue;
        }
        let chmod = match (&req.chmod, s.remote) {
            (None, true) => Some(Chmod::Octal(0o600)),
            (c, _) => c.clone(),
        };
        // --chmod, else the modes --context-modes gives context files.
        let modes = Some(context_modes)
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
    for (name, content) in &req.heredocs {
        let to = if dest_is_dir {
            within(&dest_dir, name)
        } else {
            target.clone()
        };
        let mut file = staging.create_file(&to, 0o600).map_err(io_fail)?;
        std::io::Write::write_all(&mut file, content.as_bytes()).map_err(io_fail)?;
        let mode = req.chmod.as_ref().map_or(0o644, |c| c.apply(0o644, false));
        staging
            .chown(&to, parents_owner.0, parents_owner.1)
            .map_err(io_fail)?;
        staging.chmod(&to, mode).map_err(io_fail)?;
    }
    Ok(staging_path)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{Source as DfSource, parse};
    use crate::plan::Scope;

    /// The COPY or ADD of a one-stage Dockerfile's first step.
    fn copy_of(line: &str) -> (Copy, bool) {
        let text = format!("FROM scratch\n{line}\n");
        let ast = parse(&DfSource::new("Dockerfile", text.as_bytes())).unwrap();
        let (file, errors) = instructions::typed(&ast);
        assert!(errors.is_empty(), "{line}");
        match &file.stages[0].steps[0].instruction {
            instructions::Instruction::Copy(c) => (c.clone(), false),
            instructions::Instruction::Add(c) => (c.clone(), true),
            other => panic!("{other:?}"),
        }
    }

    fn request(line: &str, vars: &[(&str, &str)]) -> Result<Request, StepError> {
        let (c, add) = copy_of(line);
        let mut scope = Scope::default();
        for (k, v) in vars {
            scope.set(k, v);
        }
        let expand = |w: &str| super::super::expand_word(&scope, '\\', w);
        let image = Layers::open(&[]).unwrap();
        Request::new(&c, add, &expand, &scope, &|d| format!("/work/{d}"), &image)
    }

    /// A context directory with `files` (a trailing `/` makes a
    /// directory) and its `.dockerignore` text.
    fn context(files: &[&str], ignore: &str) -> (tempfile::TempDir, Arc<Root>, Matcher) {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let path = dir.path().join(f);
            match f.strip_suffix('/') {
                Some(_) => fs::create_dir_all(&path).unwrap(),
                None => {
                    fs::create_dir_all(path.parent().unwrap()).unwrap();
                    fs::write(&path, f.as_bytes()).unwrap();
                }
            }
        }
        let root = Arc::new(Root::open(dir.path()).unwrap());
        let ignore = Matcher::parse(ignore, Path::new(".dockerignore")).unwrap();
        (dir, root, ignore)
    }

    fn resolved(line: &str, files: &[&str], ignore: &str) -> Result<(Request, Found), String> {
        let (_dir, root, ignore) = context(files, ignore);
        let req = request(line, &[]).map_err(|e| e.to_string())?;
        let origin = Origin {
            root,
            context: true,
            ignore: Some(&ignore),
        };
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path()).unwrap();
        let image = Layers::open(&[]).unwrap();
        let found =
            resolve(&store, &req, &origin, &image, &|_, _| {}).map_err(|e| e.to_string())?;
        Ok((req, found))
    }

    fn names(found: &Found) -> Vec<&str> {
        found.sources.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn a_request_expands_its_words_and_places_its_destination() {
        let r = request(
            "COPY --chown=$U:$U --chmod=$M --exclude=$X $SRC $D/",
            &[
                ("U", "app"),
                ("M", "640"),
                ("X", "*.md"),
                ("SRC", "a*"),
                ("D", "out"),
            ],
        )
        .unwrap();
        assert_eq!(r.dest, "/work/out");
        assert!(r.names_dir);
        assert_eq!(r.chown.as_deref(), Some("app:app"));
        assert!(matches!(r.chmod, Some(Chmod::Octal(0o640))));
        assert_eq!(r.patterns, ["a*"]);
        assert!(r.exclude.as_ref().unwrap().is_ignored("x.md"));
        // An empty destination is the WORKDIR; `.` names a directory.
        assert_eq!(request("COPY a $NOPE", &[]).unwrap().dest, "/work");
        assert!(request("COPY a .", &[]).unwrap().names_dir);
        assert!(!request("COPY a b", &[]).unwrap().names_dir);
        // A heredoc is a source with no pattern; its body is expanded
        // unless its opener is quoted.
        let r = request("COPY <<EOF /f\n$V\nEOF", &[("V", "x")]).unwrap();
        assert!(r.patterns.is_empty());
        assert_eq!(r.heredocs, [("EOF".to_string(), "x\n".to_string())]);
        let r = request("COPY <<'EOF' /f\n$V\nEOF", &[("V", "x")]).unwrap();
        assert_eq!(r.heredocs[0].1, "$V\n");
        let e = request("COPY --chmod=$M a /", &[("M", "abc")])
            .err()
            .unwrap();
        assert!(e.to_string().contains("abc"), "{e}");
    }

    #[test]
    fn sources_resolve_in_the_context_as_buildkit_reports_them() {
        let files = ["a.txt", "b.txt", "dir/", "dir/in", "secret.key"];
        let (_, found) = resolved("COPY *.txt /d/", &files, "").unwrap();
        assert_eq!(names(&found), ["a.txt", "b.txt"]);
        assert!(found.dest_is_dir);
        // One directory source: the destination is a directory.
        let (_, found) = resolved("COPY dir /d", &files, "").unwrap();
        assert!(found.dest_is_dir);
        let (_, found) = resolved("COPY a.txt /d", &files, "").unwrap();
        assert!(!found.dest_is_dir, "one file onto a new name");
        // A wildcard that matches nothing beside one that does: no error.
        let (_, found) = resolved("COPY *.nope a.txt /d/", &files, "").unwrap();
        assert_eq!(names(&found), ["a.txt"]);
        assert_eq!(
            resolved("COPY missing /d/", &files, "").err().unwrap(),
            "COPY failed: \"missing\": not found in the build context (or excluded by .dockerignore)"
        );
        assert_eq!(
            resolved("COPY *.nope /d/", &files, "").err().unwrap(),
            "COPY failed: no source files were specified: \"*.nope\" matches nothing in the build context (or everything it matches is excluded by .dockerignore)"
        );
        // .dockerignore'd names are not there.
        assert!(resolved("COPY secret.key /d/", &files, "*.key").is_err());
        let (_, found) = resolved("COPY * /d/", &files, "*.key").unwrap();
        assert_eq!(names(&found), ["a.txt", "b.txt", "dir"]);
        assert_eq!(
            resolved("COPY a.txt b.txt /d", &files, "").err().unwrap(),
            "When using COPY with more than one source file, the destination must be a directory and end with a /"
        );
    }

    #[test]
    fn a_copy_key_changes_with_each_input_and_only_then() {
        let files = ["a.txt", "b.txt"];
        let key = |line: &str, parent: &str, digest: &str| {
            let (c, _) = copy_of(line);
            let (req, found) = resolved(line, &files, "").unwrap();
            let contents = found
                .sources
                .iter()
                .map(|_| Content {
                    digest: digest.to_string(),
                    files: vec![("file x".into(), digest.into())],
                })
                .collect();
            key_inputs(parent, &c, &req, &found, contents).key()
        };
        let base = key("COPY a.txt /d", "p", "c1");
        assert_eq!(base, key("COPY a.txt /d", "p", "c1"), "the same inputs");
        for other in [
            key("COPY a.txt /d", "p2", "c1"),
            key("COPY a.txt /d", "p", "c2"),
            key("COPY a.txt /e", "p", "c1"),
            key("COPY --chown=1 a.txt /d", "p", "c1"),
            key("COPY --chmod=600 a.txt /d", "p", "c1"),
            key("COPY --link a.txt /d", "p", "c1"),
            key("COPY b.txt /d", "p", "c1"),
            key("ADD a.txt /d", "p", "c1"),
        ] {
            assert_ne!(base, other);
        }
        assert_ne!(
            key("COPY a.txt b.txt /d/", "p", "c1"),
            key("COPY b.txt a.txt /d/", "p", "c1"),
            "sources in their order"
        );
    }
}
