//! Attacks on kiln (issue 10): each test plays one attack against the real
//! binary and asserts both that nothing outside the store and the image
//! changed (a [`Canary`] snapshot of files outside, before and after) and
//! what kiln must do instead: refuse with a clear error, or contain the
//! effect inside the image.
//!
//! The canaries: a directory `/tmp/kiln-canary-*` kiln is told about only
//! through the attack (a secret file, a victim directory, a symlink), and
//! host files snapshotted, never created: `/` and `/etc` one level deep
//! (names, types, modes, owners, sizes, link counts, content hashes:
//! `/etc/shadow` and `/etc/passwd` among them) and
//! `/proc/sys/kernel/core_pattern`.

use crate::util::{busybox_tar, kiln, need_root, text};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// The canary harness
// ---------------------------------------------------------------------------

/// What one path is: enough to see any change an attack could make.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Files only (a directory's size follows its entries).
    size: u64,
    /// Files only: a hard link made to a canary shows here.
    nlink: u64,
    /// Files only: (seconds, nanoseconds).
    mtime: (i64, i64),
    /// sha256 of a file's content (files up to 4 MiB).
    sha256: Option<String>,
    /// A symlink's target.
    link: Option<PathBuf>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn node(path: &Path) -> Option<Node> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    };
    let file = ft.is_file();
    Some(Node {
        kind,
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        size: if file { m.len() } else { 0 },
        nlink: if file { m.nlink() } else { 0 },
        mtime: if file {
            (m.mtime(), m.mtime_nsec())
        } else {
            (0, 0)
        },
        sha256: (file && m.len() <= 4 << 20)
            .then(|| std::fs::read(path).ok().map(|b| sha256(&b)))
            .flatten(),
        link: std::fs::read_link(path).ok(),
    })
}

/// Records `path` and, for directories, what is under it to `depth` levels.
fn walk(path: &Path, depth: usize, into: &mut BTreeMap<PathBuf, Option<Node>>) {
    let n = node(path);
    let is_dir = n.as_ref().is_some_and(|n| n.kind == "dir");
    into.insert(path.to_path_buf(), n);
    if is_dir && depth > 0 {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        for e in entries.flatten() {
            walk(&e.path(), depth - 1, into);
        }
    }
}

struct Watched {
    root: PathBuf,
    depth: usize,
    /// Strict: nothing may be added either (else only what was there must stay).
    strict: bool,
    before: BTreeMap<PathBuf, Option<Node>>,
}

/// Files and directories outside every store, snapshotted before an attack
/// and compared after it.
struct Canary {
    dir: tempfile::TempDir,
    secret: String,
    watched: Vec<Watched>,
    /// Only for tests that attack it (they hold [`HOST_GLOBAL`]): other
    /// tests running meanwhile must not see their change.
    core_pattern: Option<Option<String>>,
    _serial: Option<std::sync::MutexGuard<'static, ()>>,
}

/// Held by the tests that attack host-global state (core_pattern).
static HOST_GLOBAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

impl Canary {
    /// A fresh `/tmp/kiln-canary-*` (a secret file, a victim directory with
    /// a file, a nested directory, a relative symlink) and the host's `/`,
    /// `/etc` and core_pattern.
    fn new() -> Canary {
        let dir = tempfile::Builder::new()
            .prefix("kiln-canary-")
            .tempdir_in("/tmp")
            .expect("canary dir");
        let secret = format!(
            "kiln-canary-secret-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let d = dir.path();
        std::fs::write(d.join("secret"), format!("{secret}\n")).unwrap();
        std::fs::create_dir_all(d.join("victim")).unwrap();
        std::fs::write(d.join("victim/keep"), "keep me\n").unwrap();
        std::fs::create_dir_all(d.join("sub/inner")).unwrap();
        std::fs::write(d.join("sub/inner/file"), "inner\n").unwrap();
        symlink("secret", d.join("link")).unwrap();
        let mut c = Canary {
            secret,
            watched: Vec::new(),
            core_pattern: None,
            _serial: None,
            dir,
        };
        let path = c.dir.path().to_path_buf();
        c.watch(&path, 16, true);
        c.watch(Path::new("/etc"), 1, true);
        c.watch(Path::new("/"), 1, true);
        c
    }

    /// Also watches `root` (to `depth` levels).
    fn watch(&mut self, root: &Path, depth: usize, strict: bool) -> &mut Self {
        let mut before = BTreeMap::new();
        walk(root, depth, &mut before);
        self.watched.push(Watched {
            root: root.to_path_buf(),
            depth,
            strict,
            before,
        });
        self
    }

    /// Also watches the host's core_pattern, serialized with the other
    /// tests that attack it.
    fn with_core_pattern(mut self) -> Self {
        self._serial = Some(HOST_GLOBAL.lock().unwrap_or_else(|e| e.into_inner()));
        self.core_pattern = Some(std::fs::read_to_string(CORE_PATTERN).ok());
        self
    }

    /// The canary directory (`/tmp/kiln-canary-*`).
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn path_str(&self) -> String {
        self.path().display().to_string()
    }

    /// The canary path as a relative path that climbs out of anything:
    /// `../../…/tmp/kiln-canary-*`.
    fn climbing(&self) -> String {
        format!(
            "{}{}",
            "../".repeat(16),
            self.path_str().trim_start_matches('/')
        )
    }

    /// Every change since the snapshot, as lines.
    fn changes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for w in &self.watched {
            let mut after = BTreeMap::new();
            walk(&w.root, w.depth, &mut after);
            for (path, was) in &w.before {
                let now = after.get(path).cloned().flatten();
                if &now != was {
                    out.push(format!("{}: was {was:?}, now {now:?}", path.display()));
                }
            }
            if w.strict {
                for (path, now) in &after {
                    if !w.before.contains_key(path) {
                        out.push(format!("{}: appeared: {now:?}", path.display()));
                    }
                }
            }
        }
        if let Some(was) = &self.core_pattern {
            let now = std::fs::read_to_string(CORE_PATTERN).ok();
            if &now != was {
                out.push(format!("{CORE_PATTERN}: was {was:?}, now {now:?}"));
            }
        }
        out
    }

    /// Panics, listing them, when anything outside changed.
    fn assert_unchanged(&self) {
        let changes = self.changes();
        assert!(
            changes.is_empty(),
            "the attack changed things outside the store:\n{}",
            changes.join("\n")
        );
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        // A successful core_pattern attack must not outlive the test.
        if let Some(Some(was)) = &self.core_pattern
            && std::fs::read_to_string(CORE_PATTERN).ok().as_ref() != Some(was)
        {
            let _ = std::fs::write(CORE_PATTERN, was);
        }
    }
}

// ---------------------------------------------------------------------------
// Running kiln, bounded
// ---------------------------------------------------------------------------

/// Every process descended from `pid` (by the parent links in /proc).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(pp) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            parent.push((p, pp));
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for &(child, pp) in &parent {
            if pp == p && !out.contains(&child) {
                out.push(child);
                queue.push(child);
            }
        }
    }
    out
}

/// SIGKILLs `pid` and everything it started (containers included).
fn kill_tree(pid: u32) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let tree = descendants(pid);
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    for p in tree {
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
    }
}

/// A finished (or stopped) command.
struct Ran {
    out: Output,
    timed_out: bool,
}

impl Ran {
    fn ok(&self) -> bool {
        !self.timed_out && self.out.status.success()
    }
    fn stdout(&self) -> String {
        text(&self.out.stdout)
    }
    fn stderr(&self) -> String {
        text(&self.out.stderr)
    }
    /// Lower-cased standard error, for loose matches.
    fn err(&self) -> String {
        self.stderr().to_lowercase()
    }
    fn all(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }
}

/// Runs `cmd`; after `limit`, kills it and what it started.
fn bounded(cmd: &mut Command, limit: Duration) -> Ran {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > limit {
            timed_out = true;
            kill_tree(child.id());
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // A container left behind may hold the pipes: do not wait for ever.
    let join = |t: std::thread::JoinHandle<Vec<u8>>| {
        let until = Instant::now() + Duration::from_secs(5);
        while !t.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        if t.is_finished() {
            t.join().unwrap_or_default()
        } else {
            Vec::new()
        }
    };
    let stdout = join(t_out);
    let stderr = join(t_err);
    Ran {
        out: Output {
            status,
            stdout,
            stderr,
        },
        timed_out,
    }
}

const LIMIT: Duration = Duration::from_secs(60);

/// `kiln --root ROOT args...`, bounded.
fn k(root: &Path, args: &[&str]) -> Ran {
    let mut cmd = kiln();
    cmd.arg("--root").arg(root).args(args);
    let ran = bounded(&mut cmd, LIMIT);
    assert!(
        !ran.timed_out,
        "kiln {args:?} ran over {LIMIT:?}: {}",
        ran.all()
    );
    ran
}

/// `kiln --root ROOT build --progress=plain [extra...] CTX`.
fn build(root: &Path, ctx: &Path, extra: &[&str]) -> Ran {
    let mut args = vec!["build", "--progress=plain"];
    args.extend(extra);
    args.push(ctx.to_str().unwrap());
    k(root, &args)
}

/// `kiln run --rm IMAGE sh -c SCRIPT`.
fn sh(root: &Path, flags: &[&str], image: &str, script: &str) -> Ran {
    let mut args = vec!["run", "--rm"];
    args.extend(flags);
    args.extend([image, "sh", "-c", script]);
    k(root, &args)
}

/// Asserts `kiln fsck` finds the store sound.
fn fsck(root: &Path) {
    let ran = k(root, &["fsck"]);
    assert_eq!(
        ran.out.status.code(),
        Some(0),
        "fsck after the attack: {}",
        ran.all()
    );
}

/// Asserts `ran` failed (not killed, not timed out) and its error names
/// one of `words` (lower case).
fn refused(ran: &Ran, words: &[&str]) {
    assert!(!ran.timed_out, "timed out: {}", ran.all());
    assert!(
        !ran.out.status.success() && ran.out.status.code().is_some(),
        "must be refused (a non-zero exit, not a signal): {}",
        ran.all()
    );
    let err = ran.err();
    assert!(
        words.iter().any(|w| err.contains(w)),
        "the error should say {words:?}: {}",
        ran.stderr()
    );
}

/// A store holding busybox as `box:1` (CMD sh), in a temp dir.
fn store() -> Option<tempfile::TempDir> {
    if !need_root("the attacks need containers, mounts and host paths") {
        return None;
    }
    let tar = busybox_tar()?;
    let root = tempfile::tempdir().expect("tempdir");
    let ran = k(
        root.path(),
        &[
            "import",
            tar.to_str().unwrap(),
            "box:1",
            "-c",
            "CMD [\"sh\"]",
        ],
    );
    assert!(ran.ok(), "{}", ran.all());
    Some(root)
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

fn context(dockerfile: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().expect("tempdir");
    write(ctx.path(), &[("Dockerfile", dockerfile)]);
    ctx
}

/// A unique-enough word for names outside (`/etc/kiln-attack-<word>`).
fn word() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}x{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

// ---------------------------------------------------------------------------
// Crafted tars and archives
// ---------------------------------------------------------------------------

/// One tar entry with its name and link name exactly as given.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

fn raw_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (name, kind, link, data, mode): (&str, tar::EntryType, &str, &[u8], u32) = match e {
            E::Dir(n) => (n, tar::EntryType::Directory, "", b"", 0o755),
            E::File(n, d) => (n, tar::EntryType::Regular, "", d, 0o644),
            E::Sym(n, l) => (n, tar::EntryType::Symlink, l, b"", 0o777),
            E::Hard(n, l) => (n, tar::EntryType::Link, l, b"", 0o644),
        };
        assert!(name.len() <= 100 && link.len() <= 100, "{name} -> {link}");
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..name.len()].copy_from_slice(name.as_bytes());
            g.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn gunzip_if(bytes: &[u8]) -> Vec<u8> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(bytes).unwrap()
    } else {
        bytes.to_vec()
    }
}

/// The entries of a tar (regular files only, by name).
fn tar_map(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(bytes);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        out.insert(name.trim_start_matches("./").to_string(), b);
    }
    out
}

fn map_tar(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn descriptor(media: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media,
        "digest": format!("sha256:{}", sha256(bytes)),
        "size": bytes.len(),
    })
}

/// An OCI archive (`kiln load` input) of one image named `name`, its
/// layers the given uncompressed tars, stored as they are.
fn oci_archive(name: &str, layers: &[Vec<u8>]) -> Vec<u8> {
    let config = serde_json::json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| format!("sha256:{}", sha256(l))).collect::<Vec<_>>(),
        },
    });
    let config = serde_json::to_vec(&config).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": layers
            .iter()
            .map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l))
            .collect::<Vec<_>>(),
    }))
    .unwrap();
    let mut files = BTreeMap::new();
    let mut index_entry = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    index_entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
    files.insert(
        "index.json".to_string(),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [index_entry]}))
            .unwrap(),
    );
    files.insert(
        "oci-layout".to_string(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    );
    for blob in layers.iter().chain([&config, &manifest]) {
        files.insert(format!("blobs/sha256/{}", sha256(blob)), blob.clone());
    }
    map_tar(&files)
}

/// The busybox root filesystem with the top-level entry `replace` (`proc`,
/// `dev`) turned into a symlink to `/{target}` (an empty directory).
fn busybox_with_symlink(replace: &str, target: &str) -> Vec<u8> {
    let bytes = std::fs::read(busybox_tar().unwrap()).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(bytes.as_slice());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().into_owned();
        let p = path.to_string_lossy().trim_start_matches("./").to_string();
        if p.trim_end_matches('/') == replace || p.starts_with(&format!("{replace}/")) {
            continue;
        }
        let mut h = e.header().clone();
        if h.entry_type() == tar::EntryType::Symlink || h.entry_type() == tar::EntryType::Link {
            let link = e.link_name().unwrap().unwrap().into_owned();
            b.append_link(&mut h, &path, &link).unwrap();
        } else {
            b.append_data(&mut h, &path, &mut e).unwrap();
        }
    }
    let extra = raw_tar(&[
        E::Dir(&format!("{target}/")),
        E::Sym(replace, &format!("/{target}")),
    ]);
    let mut extra_a = tar::Archive::new(extra.as_slice());
    for e in extra_a.entries().unwrap() {
        let e = e.unwrap();
        let mut h = e.header().clone();
        let path = e.path().unwrap().into_owned();
        if h.entry_type() == tar::EntryType::Symlink {
            let link = e.link_name().unwrap().unwrap().into_owned();
            b.append_link(&mut h, &path, &link).unwrap();
        } else {
            b.append_data(&mut h, &path, std::io::empty()).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// Imports `tar_bytes` as `name` into `root` (with CMD sh and `changes`).
fn import_bytes(root: &Path, tar_bytes: &[u8], name: &str, changes: &[&str]) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("in.tar");
    std::fs::write(&tar, tar_bytes).unwrap();
    let mut args = vec!["import", tar.to_str().unwrap(), name, "-c", "CMD [\"sh\"]"];
    for c in changes {
        args.extend(["-c", c]);
    }
    k(root, &args)
}

// ---------------------------------------------------------------------------
// 1-9: the build path
// ---------------------------------------------------------------------------

#[test]
fn attack_01_context_symlink_as_copy_source() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    for (link, target) in [
        ("d", canary.path_str()),
        ("d2", canary.climbing()),
        ("e", "/etc".to_string()),
    ] {
        let file = if link == "e" { "hostname" } else { "secret" };
        for instr in ["COPY", "ADD"] {
            let ctx = context(&format!("FROM box:1\n{instr} {link}/{file} /x\n"));
            symlink(&target, ctx.path().join(link)).unwrap();
            let ran = build(root.path(), ctx.path(), &["-t", "stolen:1"]);
            assert!(
                !ran.all().contains(&canary.secret),
                "{instr} {link}/{file}: the secret leaked: {}",
                ran.all()
            );
            refused(&ran, &["not found", "no such file"]);
        }
    }
    assert!(!k(root.path(), &["inspect", "stolen:1"]).ok());
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_02_bind_mount_of_context_symlink_reads_nothing_outside() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    for (link, target) in [("d", canary.path_str()), ("d2", canary.climbing())] {
        let ctx = context(&format!(
            "FROM box:1\nRUN --mount=type=bind,source={link},target=/m cat /m/secret > /got || true\n"
        ));
        symlink(&target, ctx.path().join(link)).unwrap();
        let out = tempfile::tempdir().unwrap();
        let dest = format!("type=local,dest={}", out.path().display());
        let ran = build(root.path(), ctx.path(), &["-o", &dest]);
        assert!(!ran.all().contains(&canary.secret), "{}", ran.all());
        if ran.ok() {
            let got = std::fs::read_to_string(out.path().join("got")).unwrap_or_default();
            assert!(
                !got.contains(&canary.secret),
                "the mount read the host: {got}"
            );
        }
    }
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_02_rw_bind_mount_of_context_symlink_writes_nothing_outside() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let w = word();
    for (link, target) in [
        ("d", canary.path_str()),
        ("d2", canary.climbing()),
        ("e", "/etc".to_string()),
    ] {
        let ctx = context(&format!(
            "FROM box:1\nRUN --mount=type=bind,source={link},target=/m,rw touch /m/kiln-pwned-{w}; echo x > /m/secret; rm -rf /m/victim; true\n"
        ));
        symlink(&target, ctx.path().join(link)).unwrap();
        let _ = build(root.path(), ctx.path(), &[]);
    }
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_03_stage_symlink_copy_from_resolves_in_the_stage() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let stage = format!(
        "FROM box:1 AS evil\nRUN ln -s {} /s && ln -s /etc /e && ln -s {} /r\n",
        canary.path_str(),
        canary.climbing()
    );
    for src in ["/s/secret", "/r/secret", "/e/shadow"] {
        let ctx = context(&format!("{stage}FROM box:1\nCOPY --from=evil {src} /x\n"));
        let ran = build(root.path(), ctx.path(), &["-t", "stolen:1"]);
        assert!(!ran.all().contains(&canary.secret), "{}", ran.all());
        refused(&ran, &["not found", "no such file"]);
    }
    assert!(!k(root.path(), &["inspect", "stolen:1"]).ok());
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_03_stage_symlink_bind_mount_from_resolves_in_the_stage() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let stage = format!(
        "FROM box:1 AS evil\nRUN ln -s {} /s && ln -s {} /r\n",
        canary.path_str(),
        canary.climbing()
    );
    for src in ["/s", "/r"] {
        let ctx = context(&format!(
            "{stage}FROM box:1\nRUN --mount=type=bind,from=evil,source={src},target=/m,rw cat /m/secret; touch /m/pwned; true\n"
        ));
        let ran = build(root.path(), ctx.path(), &[]);
        assert!(
            !ran.all().contains(&canary.secret),
            "the mount from the stage read the host: {}",
            ran.all()
        );
    }
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_04_mount_targets_with_dotdot_stay_in_the_container() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let up = "/..".repeat(12);
    for kind in ["tmpfs", "cache", "bind"] {
        for target in [
            format!("{up}{}/victim", canary.path_str()),
            format!("{up}{}/victim/made-by-{kind}", canary.path_str()),
        ] {
            let ctx = context(&format!(
                "FROM box:1\nRUN --mount=type={kind},target={target} ls {target} >/dev/null; true\n"
            ));
            let ran = build(root.path(), ctx.path(), &[]);
            assert!(!ran.timed_out);
        }
    }
    canary.assert_unchanged();
    fsck(root.path());
}

/// The project directory a `-o type=local,dest=out` build runs in: files
/// that must survive.
fn project() -> (tempfile::TempDir, PathBuf) {
    let outer = tempfile::tempdir().unwrap();
    let p = outer.path().join("project");
    write(
        &p,
        &[("keep.txt", "keep\n"), ("src/main.rs", "fn main() {}\n")],
    );
    (outer, p)
}

fn export_in(root: &Path, project: &Path, ctx: &Path) -> Ran {
    let mut cmd = kiln();
    cmd.current_dir(project).arg("--root").arg(root).args([
        "build",
        "--progress=plain",
        "-o",
        "type=local,dest=out",
        ctx.to_str().unwrap(),
    ]);
    bounded(&mut cmd, LIMIT)
}

#[test]
fn attack_05_whiteout_names_from_run_do_not_delete_the_project() {
    let Some(root) = store() else { return };
    let mut canary = Canary::new();
    let (_outer, p) = project();
    canary.watch(&p, 8, false);
    for script in [
        "touch '/.wh...'",
        "touch '/.wh..'",
        "mkdir -p /x && touch '/x/.wh..' '/x/.wh...'",
    ] {
        let ctx = context(&format!("FROM box:1\nRUN {script}\n"));
        let ran = export_in(root.path(), &p, ctx.path());
        assert!(!ran.timed_out);
        assert!(
            p.join("keep.txt").is_file(),
            "{script}: the project is gone: {}",
            ran.all()
        );
        if ran.ok() {
            assert!(p.join("out/bin/busybox").is_file(), "{}", ran.all());
        } else {
            refused(&ran, &["whiteout", ".wh."]);
        }
    }
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_05_whiteout_names_from_the_context_do_not_delete_the_project() {
    let Some(root) = store() else { return };
    let mut canary = Canary::new();
    let (_outer, p) = project();
    canary.watch(&p, 8, false);
    for name in [".wh...", ".wh.."] {
        let ctx = context("FROM box:1\nCOPY . /\n");
        write(ctx.path(), &[(name, "x")]);
        let ran = export_in(root.path(), &p, ctx.path());
        assert!(!ran.timed_out);
        assert!(p.join("keep.txt").is_file(), "{name}: {}", ran.all());
        if !ran.ok() {
            refused(&ran, &["whiteout", ".wh."]);
        }
    }
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_05_whiteout_names_from_an_added_tar_do_not_delete_the_project() {
    let Some(root) = store() else { return };
    let mut canary = Canary::new();
    let (_outer, p) = project();
    canary.watch(&p, 8, false);
    let ctx = context("FROM box:1\nADD evil.tar /\n");
    std::fs::write(
        ctx.path().join("evil.tar"),
        raw_tar(&[
            E::Dir("x/"),
            E::File("x/.wh..", b""),
            E::File("x/.wh...", b""),
            E::File(".wh...", b""),
        ]),
    )
    .unwrap();
    let ran = export_in(root.path(), &p, ctx.path());
    assert!(!ran.timed_out);
    assert!(p.join("keep.txt").is_file(), "{}", ran.all());
    if !ran.ok() {
        refused(&ran, &["whiteout", ".wh."]);
    }
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_05_load_of_a_layer_with_dot_whiteouts_keeps_the_store() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    for entries in [
        vec![E::Dir("x/"), E::File("x/.wh..", b"")],
        vec![E::Dir("x/"), E::File("x/.wh...", b"")],
        vec![E::File(".wh...", b"")],
        vec![E::File(".wh..", b"")],
    ] {
        let layer = raw_tar(&entries);
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("evil.tar");
        std::fs::write(&archive, oci_archive("evil:1", &[layer])).unwrap();
        let ran = k(root.path(), &["load", "-i", archive.to_str().unwrap()]);
        assert!(!ran.timed_out);
        if !ran.ok() {
            refused(&ran, &["whiteout", ".wh."]);
        }
        for sub in ["tmp", "snapshots", "blobs/sha256"] {
            assert!(
                root.path().join(sub).is_dir(),
                "{sub} is gone: {}",
                ran.all()
            );
        }
        assert!(k(root.path(), &["inspect", "box:1"]).ok());
        fsck(root.path());
    }
    let ran = sh(root.path(), &[], "box:1", "echo alive");
    assert_eq!(ran.stdout(), "alive\n", "{}", ran.all());
    canary.assert_unchanged();
}

#[test]
fn attack_06_onbuild_of_an_evil_base_copies_no_context_symlink() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let tar = busybox_tar().unwrap();
    let ran = k(
        root.path(),
        &[
            "import",
            tar.to_str().unwrap(),
            "evil:1",
            "-c",
            "ONBUILD COPY link/secret /stolen",
            "-c",
            "ONBUILD COPY link2/secret /stolen2",
        ],
    );
    assert!(ran.ok(), "{}", ran.all());
    // The victim's innocent context happens to hold symlinks out of it.
    let ctx = context("FROM evil:1\nRUN true\n");
    symlink(canary.path(), ctx.path().join("link")).unwrap();
    symlink(canary.climbing(), ctx.path().join("link2")).unwrap();
    let ran = build(root.path(), ctx.path(), &["-t", "victim:1"]);
    assert!(!ran.all().contains(&canary.secret), "{}", ran.all());
    refused(&ran, &["not found", "no such file"]);
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_06_evil_base_with_proc_symlink_cannot_write_core_pattern() {
    let Some(root) = store() else { return };
    let canary = Canary::new().with_core_pattern();
    let ran = import_bytes(
        root.path(),
        &busybox_with_symlink("proc", "p"),
        "evil:1",
        &[],
    );
    assert!(ran.ok(), "{}", ran.all());
    let ctx = context(
        "FROM evil:1\nRUN cat /proc/sys/kernel/core_pattern; if echo '|/bin/kiln-pwned' > /proc/sys/kernel/core_pattern; then echo W''ROTE; fi; true\n",
    );
    let ran = build(root.path(), ctx.path(), &[]);
    assert!(!ran.timed_out);
    canary.assert_unchanged();
    assert!(!ran.all().contains("WROTE"), "{}", ran.all());
    if !ran.ok() {
        refused(&ran, &["proc"]);
    }
    fsck(root.path());
}

#[test]
fn attack_07_cache_key_with_dotdot_writes_nothing_outside() {
    let Some(a) = store() else { return };
    let canary = Canary::new();
    let ctx = context("FROM box:1\nRUN echo built > /artifact\n");
    let cache = tempfile::tempdir().unwrap();
    let ran = build(
        a.path(),
        ctx.path(),
        &[&format!(
            "--cache-to=type=local,dest={}",
            cache.path().display()
        )],
    );
    assert!(ran.ok(), "{}", ran.all());
    // Rewrite every key of the cache's key map: config → manifest → index.
    let c = cache.path();
    let blob = |d: &str| c.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let put = |bytes: &[u8]| {
        std::fs::write(blob(&sha256(bytes)), bytes).unwrap();
        (format!("sha256:{}", sha256(bytes)), bytes.len())
    };
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.join("index.json")).unwrap()).unwrap();
    let mut edited = 0;
    for m in index["manifests"].as_array_mut().unwrap() {
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(blob(m["digest"].as_str().unwrap())).unwrap())
                .unwrap();
        let mut config: serde_json::Value = serde_json::from_slice(
            &std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let label = &mut config["config"]["Labels"]["dev.kiln.cache.v1"];
        let mut entries: serde_json::Value =
            serde_json::from_str(label.as_str().expect("the key map label")).unwrap();
        let evil = format!("{}/owned", canary.climbing());
        for e in entries.as_array_mut().unwrap() {
            e["key"] = evil.clone().into();
        }
        *label = serde_json::to_string(&entries).unwrap().into();
        let (d, s) = put(&serde_json::to_vec(&config).unwrap());
        manifest["config"]["digest"] = d.into();
        manifest["config"]["size"] = s.into();
        let (d, s) = put(&serde_json::to_vec(&manifest).unwrap());
        m["digest"] = d.into();
        m["size"] = s.into();
        edited += 1;
    }
    assert_eq!(edited, 1);
    std::fs::write(c.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    // A fresh store with the base.
    let base = cache.path().join("../base.tar");
    let base = base.with_file_name(format!("kiln-attack-base-{}.tar", word()));
    assert!(k(a.path(), &["save", "box:1", "-o", base.to_str().unwrap()]).ok());
    let b = tempfile::tempdir().unwrap();
    assert!(k(b.path(), &["load", "-i", base.to_str().unwrap()]).ok());
    let _ = std::fs::remove_file(&base);
    let ran = build(
        b.path(),
        ctx.path(),
        &[&format!("--cache-from=type=local,src={}", c.display())],
    );
    assert!(
        !canary.path().join("owned").exists(),
        "the cache key wrote outside: {}",
        ran.all()
    );
    canary.assert_unchanged();
    // A bad cache is a warning, as a missing one is: the build runs.
    assert!(ran.ok(), "{}", ran.all());
    fsck(b.path());
}

const DEEP: &str =
    "FROM box:1\nRUN i=0; while [ $i -lt 1600 ]; do mkdir d; cd d; i=$((i+1)); done\nRUN true\n";

fn no_crash(ran: &Ran, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        ran.out.status.signal(),
        None,
        "{what}: kiln was killed by a signal: {}",
        ran.stderr()
    );
    assert!(
        matches!(ran.out.status.code(), Some(0 | 1)),
        "{what}: {:?}: {}",
        ran.out.status,
        ran.stderr()
    );
    assert!(
        !ran.err().contains("stack overflow"),
        "{what}: {}",
        ran.stderr()
    );
    assert!(!ran.err().contains("panicked"), "{what}: {}", ran.stderr());
}

#[test]
fn attack_08_a_1600_deep_tree_does_not_crash_kiln() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let ctx = context(DEEP);
    let ran = build(root.path(), ctx.path(), &["-t", "deep:1"]);
    no_crash(&ran, "build");
    if ran.ok() {
        for args in [
            vec!["save", "deep:1", "-o", "/dev/null"],
            vec!["fsck"],
            vec!["run", "--rm", "deep:1", "true"],
        ] {
            no_crash(&k(root.path(), &args), &args.join(" "));
        }
    }
    canary.assert_unchanged();
}

/// The same tree written out by `-o type=local`: within the test bound
/// (today about 110 s on this 2-core machine: path work per level).
#[test]
fn attack_08_a_1600_deep_tree_exports_without_crash_in_bounded_time() {
    let Some(root) = store() else { return };
    let ctx = context(DEEP);
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let mut cmd = kiln();
    cmd.arg("--root").arg(root.path()).args([
        "build",
        "--progress=plain",
        "-o",
        &dest,
        ctx.path().to_str().unwrap(),
    ]);
    let ran = bounded(&mut cmd, LIMIT);
    assert!(!ran.timed_out, "the export ran over {LIMIT:?}");
    no_crash(&ran, "export");
}

/// `kiln args...` started by bash with descriptor 7 open on `dir`.
fn with_fd7(dir: &Path, root: &Path, args: &[&str]) -> Ran {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("exec 7<\"$1\"; shift; exec \"$@\"")
        .arg("bash")
        .arg(dir)
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("NO_COLOR", "1");
    bounded(&mut cmd, LIMIT)
}

#[test]
fn attack_09_workdir_proc_self_fd_in_a_build() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    for workdir in ["/proc/self/fd/7", "/proc/self/cwd", "/proc/1/cwd"] {
        let ctx = context(&format!(
            "FROM box:1\nWORKDIR {workdir}\nRUN touch pwned; ls ../.. ; cat ../secret; true\n"
        ));
        let ran = with_fd7(
            canary.path(),
            root.path(),
            &["build", "--progress=plain", ctx.path().to_str().unwrap()],
        );
        assert!(!ran.timed_out);
        assert!(!ran.all().contains(&canary.secret), "{}", ran.all());
    }
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_09_workdir_proc_self_fd_in_run() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    for workdir in ["/proc/self/fd/7", "/proc/self/fd/7/victim"] {
        let ran = with_fd7(
            canary.path(),
            root.path(),
            &[
                "run",
                "--rm",
                "-w",
                workdir,
                "box:1",
                "sh",
                "-c",
                "touch pwned; cat ../secret secret; true",
            ],
        );
        assert!(!ran.timed_out);
        assert!(!ran.all().contains(&canary.secret), "{}", ran.all());
    }
    canary.assert_unchanged();
    fsck(root.path());
}

// ---------------------------------------------------------------------------
// 10-13: the container
// ---------------------------------------------------------------------------

#[test]
fn attack_10_run_refuses_an_image_whose_proc_is_a_symlink() {
    let Some(root) = store() else { return };
    let canary = Canary::new().with_core_pattern();
    let ran = import_bytes(
        root.path(),
        &busybox_with_symlink("proc", "p"),
        "evil:1",
        &[],
    );
    assert!(ran.ok(), "{}", ran.all());
    let ran = sh(
        root.path(),
        &[],
        "evil:1",
        "cat /proc/sys/kernel/core_pattern; echo '|/bin/kiln-pwned' > /proc/sys/kernel/core_pattern && echo W''ROTE",
    );
    canary.assert_unchanged();
    assert!(!ran.stdout().contains("WROTE"), "{}", ran.all());
    refused(&ran, &["/proc"]);
    fsck(root.path());
}

#[test]
fn attack_10_run_refuses_an_image_whose_dev_is_a_symlink() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let ran = import_bytes(
        root.path(),
        &busybox_with_symlink("dev", "d"),
        "evil:1",
        &[],
    );
    assert!(ran.ok(), "{}", ran.all());
    let ran = sh(root.path(), &[], "evil:1", "ls -l /dev/ /d/");
    canary.assert_unchanged();
    refused(&ran, &["/dev"]);
    fsck(root.path());
}

#[test]
fn attack_11_devices_made_with_mknod_cannot_be_opened() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    // Opens the host allows (this machine: loop0 for reading, /dev/kmsg for
    // writing, no capability needed): a node made in the container opens
    // nothing (nodev mounts: EACCES; a device cgroup: EPERM), wherever it
    // is made, /dev included.
    let mut devices = vec![("b", 7, 0, "<"), ("c", 1, 11, ">")];
    if Path::new("/dev/kvm").exists() {
        devices.push(("c", 10, 232, "<"));
    }
    for ((kind, major, minor, dir), at) in devices
        .into_iter()
        .flat_map(|d| [(d, "/tmp/dev"), (d, "/dev/made"), (d, "/dev/shm/dev")])
    {
        let ran = sh(
            root.path(),
            &[],
            "box:1",
            &format!(
                "mknod {at} {kind} {major} {minor} || exit 0; if exec 3{dir}{at}; then echo OP''ENED; head -c 1 {at} | od -c | head -n 1; fi"
            ),
        );
        assert!(!ran.timed_out);
        assert!(
            !ran.stdout().contains("OPENED"),
            "opened device {kind} {major}:{minor}: {}",
            ran.all()
        );
        assert!(
            ran.err().contains("operation not permitted")
                || ran.err().contains("permission denied"),
            "{kind} {major}:{minor} at {at}: {}",
            ran.all()
        );
    }
    canary.assert_unchanged();
}

/// A stage that makes a device node hands it to a later step through a
/// bind or a cache mount: it still opens nothing there.
#[test]
fn attack_11_devices_from_a_stage_or_a_cache_cannot_be_opened() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let ctx = context(
        "FROM box:1 AS a\nRUN mknod /loop b 7 0\n\
         FROM box:1\n\
         RUN --mount=type=cache,target=/c mknod /c/loop b 7 0 || true\n\
         RUN --mount=type=cache,target=/c if head -c 1 /c/loop >/dev/null; then echo OP''ENED-CACHE; fi\n\
         RUN --mount=type=bind,from=a,source=/,target=/m if head -c 1 /m/loop >/dev/null; then echo OP''ENED-STAGE; fi\n",
    );
    let ran = build(root.path(), ctx.path(), &["--no-cache"]);
    assert!(ran.ok(), "{}", ran.all());
    assert!(!ran.all().contains("OPENED-"), "{}", ran.all());
    assert!(ran.all().contains("Permission denied"), "{}", ran.all());
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_12_unshare_user_namespace_is_refused_in_run() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    for cmd in [
        vec!["unshare", "-r", "id"],
        vec!["unshare", "-U", "id"],
        vec!["unshare", "-m", "id"],
    ] {
        let mut args = vec!["run", "--rm", "box:1"];
        args.extend(&cmd);
        let ran = k(root.path(), &args);
        assert_ne!(
            ran.out.status.code(),
            Some(0),
            "{cmd:?} must be refused (seccomp): {}",
            ran.all()
        );
        assert!(
            ran.err().contains("operation not permitted"),
            "{cmd:?}: {}",
            ran.all()
        );
    }
    canary.assert_unchanged();
}

#[test]
fn attack_12_unshare_user_namespace_is_refused_in_a_build() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let ctx = context("FROM box:1\nRUN unshare -r id\n");
    let ran = build(root.path(), ctx.path(), &[]);
    assert!(!ran.ok(), "RUN unshare -r must fail: {}", ran.all());
    assert!(
        ran.err().contains("operation not permitted"),
        "{}",
        ran.all()
    );
    canary.assert_unchanged();
}

#[test]
fn attack_13_sigpipe_is_default_in_run() {
    let Some(root) = store() else { return };
    let mut cmd = kiln();
    cmd.arg("--root").arg(root.path()).args([
        "run",
        "--rm",
        "box:1",
        "sh",
        "-c",
        "(while :; do echo y; done) 2>/dev/null | head -c 10 >/dev/null; yes | head -c 10 >/dev/null; echo ok",
    ]);
    let ran = bounded(&mut cmd, Duration::from_secs(20));
    assert!(
        !ran.timed_out,
        "`yes | head` never ended: SIGPIPE is ignored"
    );
    assert_eq!(ran.stdout(), "ok\n", "{}", ran.all());
}

#[test]
fn attack_13_sigpipe_is_default_in_a_build() {
    let Some(root) = store() else { return };
    let ctx = context(
        "FROM box:1\nRUN (while :; do echo y; done) 2>/dev/null | head -c 10 >/dev/null; yes | head -c 10 >/dev/null; echo ok\n",
    );
    let mut cmd = kiln();
    cmd.arg("--root").arg(root.path()).args([
        "build",
        "--progress=plain",
        ctx.path().to_str().unwrap(),
    ]);
    let ran = bounded(&mut cmd, Duration::from_secs(30));
    assert!(
        !ran.timed_out,
        "`yes | head` never ended: SIGPIPE is ignored"
    );
    assert!(ran.ok(), "{}", ran.all());
}

/// kiln started with SIGPIPE, SIGQUIT and SIGUSR1 ignored (as `nohup` or a
/// CI runner may start it): the container's process (exec'd directly, no
/// shell, which ignores SIGQUIT itself with `-c`) ignores nothing.
fn with_ignored_signals(root: &Path, args: &[&str]) -> Ran {
    let mut cmd = Command::new("bash");
    cmd.env("NO_COLOR", "1")
        .args(["-c", "trap '' PIPE QUIT USR1; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(root)
        .args(args);
    bounded(&mut cmd, LIMIT)
}

#[test]
fn attack_13_no_signal_is_ignored_in_the_container() {
    let Some(root) = store() else { return };
    let ran = with_ignored_signals(
        root.path(),
        &[
            "run",
            "--rm",
            "box:1",
            "grep",
            "SigIgn",
            "/proc/self/status",
        ],
    );
    assert_eq!(ran.stdout(), "SigIgn:\t0000000000000000\n", "{}", ran.all());
    let ctx = context("FROM box:1\nRUN [\"grep\", \"SigIgn\", \"/proc/self/status\"]\n");
    let ran = with_ignored_signals(
        root.path(),
        &[
            "build",
            "--no-cache",
            "--progress=plain",
            ctx.path().to_str().unwrap(),
        ],
    );
    assert!(ran.ok(), "{}", ran.all());
    assert!(
        ran.stderr().contains("SigIgn:\t0000000000000000"),
        "{}",
        ran.all()
    );
}

// ---------------------------------------------------------------------------
// 14-16: the store
// ---------------------------------------------------------------------------

#[test]
fn attack_14_forged_layer_reusing_a_known_diffid_is_refused() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let dir = tempfile::tempdir().unwrap();
    let genuine_tar = raw_tar(&[E::File("hello", b"genuine\n")]);
    let ran = import_bytes(root.path(), &genuine_tar, "genuine:1", &[]);
    assert!(ran.ok(), "{}", ran.all());
    let saved = dir.path().join("genuine.tar");
    assert!(
        k(
            root.path(),
            &["save", "genuine:1", "-o", saved.to_str().unwrap()]
        )
        .ok()
    );
    // The forgery: the same config (so the same diffID), a layer blob with
    // other content (gzip, so its blob digest is free to differ).
    let mut files = tar_map(&std::fs::read(&saved).unwrap());
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let mut index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let mdigest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: serde_json::Value = serde_json::from_slice(&files[&blob(&mdigest)]).unwrap();
    let forged = gzip(&raw_tar(&[E::File("hello", b"forged!\n")]));
    let fd = format!("sha256:{}", sha256(&forged));
    manifest["layers"][0]["digest"] = fd.clone().into();
    manifest["layers"][0]["size"] = forged.len().into();
    manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
    files.insert(blob(&fd), forged);
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let md = format!("sha256:{}", sha256(&mbytes));
    files.insert(blob(&md), mbytes.clone());
    index["manifests"][0]["digest"] = md.into();
    index["manifests"][0]["size"] = mbytes.len().into();
    index["manifests"][0]["annotations"] =
        serde_json::json!({"org.opencontainers.image.ref.name": "forged:1"});
    files.insert("index.json".into(), serde_json::to_vec(&index).unwrap());
    let forged_archive = dir.path().join("forged.tar");
    std::fs::write(&forged_archive, map_tar(&files)).unwrap();
    let ran = k(
        root.path(),
        &["load", "-i", forged_archive.to_str().unwrap()],
    );
    refused(&ran, &["diff", "digest", "mismatch", "does not match"]);
    // The genuine image still saves its genuine layer, in every compression.
    for compression in ["gzip", "none", "zstd"] {
        let again = dir.path().join(format!("again-{compression}.tar"));
        let ran = k(
            root.path(),
            &[
                "save",
                "genuine:1",
                "-o",
                again.to_str().unwrap(),
                "--compression",
                compression,
            ],
        );
        assert!(ran.ok(), "{}", ran.all());
        let files = tar_map(&std::fs::read(&again).unwrap());
        let layers: Vec<String> = files
            .iter()
            .filter(|(n, _)| n.starts_with("blobs/"))
            .filter_map(|(_, b)| {
                let plain = gunzip_if(b);
                // Configs and manifests are blobs too: only tars are layers.
                let is_tar = plain.len() >= 512 && &plain[257..262] == b"ustar";
                is_tar.then(|| tar_map(&plain).get("hello").map(|h| text(h)))?
            })
            .collect();
        assert_eq!(layers, ["genuine\n"], "{compression}");
    }
    // ... and its filesystem is the genuine one (the image has no shell:
    // exported, not run).
    let ctx = context("FROM genuine:1\n");
    let out = dir.path().join("rootfs");
    let dest = format!("type=local,dest={}", out.display());
    let ran = build(root.path(), ctx.path(), &["-o", &dest]);
    assert!(ran.ok(), "{}", ran.all());
    assert_eq!(
        std::fs::read_to_string(out.join("hello")).unwrap(),
        "genuine\n"
    );
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_15_save_does_not_follow_planted_temp_symlinks() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let dest = tempfile::tempdir().unwrap();
    let out = dest.path().join("out.tar");
    // kiln writes `.out.tar.kiln-<pid>` beside the output: plant the names
    // of the next pids, and a few obvious others.
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let target = canary.path().join("secret");
    for pid in last + 1..last + 3000 {
        let _ = symlink(&target, dest.path().join(format!(".out.tar.kiln-{pid}")));
    }
    for name in [
        ".out.tar.tmp",
        "out.tar.tmp",
        ".out.tar.kiln",
        "out.tar.part",
    ] {
        symlink(&target, dest.path().join(name)).unwrap();
    }
    let ran = k(root.path(), &["save", "box:1", "-o", out.to_str().unwrap()]);
    canary.assert_unchanged();
    assert!(ran.ok(), "{}", ran.all());
    let check = tempfile::tempdir().unwrap();
    let ran = k(check.path(), &["load", "-i", out.to_str().unwrap()]);
    assert!(ran.ok(), "{}", ran.all());
    fsck(root.path());
}

const NOOP_STAGES: &str = "FROM box:1 AS a\nRUN true\nFROM box:1 AS b\nRUN true\nFROM box:1\nRUN --mount=type=bind,from=a,target=/a --mount=type=bind,from=b,target=/b true\n";

#[test]
fn attack_16_parallel_stages_with_empty_layers_never_collide() {
    let Some(base) = store() else { return };
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("base.tar");
    assert!(
        k(
            base.path(),
            &["save", "box:1", "-o", saved.to_str().unwrap()]
        )
        .ok()
    );
    let ctx = context(NOOP_STAGES);
    let start = Instant::now();
    for round in 0..16 {
        if start.elapsed() > Duration::from_secs(45) {
            eprintln!("stopped after {round} rounds (time)");
            break;
        }
        let root = tempfile::tempdir().unwrap();
        assert!(k(root.path(), &["load", "-i", saved.to_str().unwrap()]).ok());
        let ran = build(root.path(), ctx.path(), &[]);
        assert!(ran.ok(), "round {round}: {}", ran.all());
        assert!(!ran.err().contains("directory not empty"), "{}", ran.all());
    }
}

#[test]
fn attack_16_concurrent_builds_making_the_same_layer_both_succeed() {
    let Some(base) = store() else { return };
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("base.tar");
    assert!(
        k(
            base.path(),
            &["save", "box:1", "-o", saved.to_str().unwrap()]
        )
        .ok()
    );
    let ctx = context("FROM box:1\nRUN true\nCOPY Dockerfile /Dockerfile\n");
    for round in 0..4 {
        let root = tempfile::tempdir().unwrap();
        assert!(k(root.path(), &["load", "-i", saved.to_str().unwrap()]).ok());
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|i| {
                    let (r, c) = (root.path(), ctx.path());
                    let tag = format!("same:{i}");
                    s.spawn(move || build(r, c, &["-t", &tag]))
                })
                .collect();
            for h in hs {
                let ran = h.join().unwrap();
                assert!(ran.ok(), "round {round}: {}", ran.all());
            }
        });
        fsck(root.path());
    }
}

// ---------------------------------------------------------------------------
// 17-18: lifecycle and CLI
// ---------------------------------------------------------------------------

/// Pids whose command line is exactly `argv`.
fn pids_running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            (std::fs::read(e.path().join("cmdline")).ok()? == want).then_some(pid)
        })
        .collect()
}

#[test]
fn attack_17_kill_9_of_run_leaves_no_container() {
    let Some(root) = store() else { return };
    let seconds = format!("{}", 1000 + std::process::id() % 8999);
    let mut child = kiln()
        .arg("--root")
        .arg(root.path())
        .args(["run", "--rm", "box:1", "sleep", &seconds])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let argv = ["sleep", seconds.as_str()];
    let until = Instant::now() + Duration::from_secs(10);
    while pids_running(&argv).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !pids_running(&argv).is_empty(),
        "the container never started"
    );
    let _ = child.kill();
    let _ = child.wait();
    let until = Instant::now() + Duration::from_secs(5);
    while !pids_running(&argv).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = pids_running(&argv);
    for &p in &left {
        kill_tree(p);
    }
    assert!(
        left.is_empty(),
        "`sleep {seconds}` outlived kill -9 of kiln: {left:?}"
    );
    let ran = k(root.path(), &["prune"]);
    assert!(ran.ok(), "{}", ran.all());
    let containers: Vec<_> = std::fs::read_dir(root.path().join("containers"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(containers.is_empty(), "left behind: {containers:?}");
    fsck(root.path());
}

#[test]
fn attack_18_a_one_byte_memory_limit_is_refused() {
    let Some(root) = store() else { return };
    let ran = k(root.path(), &["run", "--rm", "-m", "1", "box:1", "true"]);
    refused(&ran, &["memory"]);
}

#[test]
fn attack_18_load_of_a_missing_file_says_nothing_of_dockerfiles() {
    let root = tempfile::tempdir().unwrap();
    let ran = k(
        root.path(),
        &["load", "-i", "/nonexistent/kiln-archive.tar"],
    );
    refused(&ran, &["/nonexistent", "no such file"]);
    assert!(!ran.stderr().contains("-f"), "{}", ran.stderr());
    assert!(!ran.err().contains("dockerfile"), "{}", ran.stderr());
}

// ---------------------------------------------------------------------------
// 19-: attacks kiln should already stop
// ---------------------------------------------------------------------------

/// The malicious layer shapes: what each tar holds.
fn evil_entries(c: &Canary, shape: &str) -> Vec<(String, Option<String>, Option<Vec<u8>>)> {
    // (name, link target (hard for shape "hard*"), data)
    let pwn = Some(b"pwned\n".to_vec());
    let cp = c.path_str();
    match shape {
        "dotdot" => vec![(format!("{}/escaped", c.climbing()), None, pwn)],
        "absolute" => vec![(format!("{cp}/abs"), None, pwn)],
        "symlink" => vec![
            ("a".into(), Some(cp.clone()), None),
            ("a/through".into(), None, pwn.clone()),
            ("r".into(), Some(c.climbing()), None),
            ("r/through-rel".into(), None, pwn.clone()),
            ("v".into(), Some(format!("{cp}/victim")), None),
            ("v/keep".into(), None, pwn),
        ],
        "hard-absolute" => vec![
            ("h".into(), Some(format!("{cp}/secret")), None),
            ("p".into(), Some("/etc/passwd".into()), None),
            ("h".into(), None, pwn),
        ],
        "hard-dotdot" => vec![
            ("h2".into(), Some(format!("{}/secret", c.climbing())), None),
            ("x".into(), Some("../x".into()), None),
            ("h2".into(), None, pwn),
        ],
        _ => unreachable!(),
    }
}

fn evil_tar(c: &Canary, shape: &str) -> Vec<u8> {
    let entries = evil_entries(c, shape);
    let mut list = vec![E::File("ok.txt", b"ok\n")];
    for (name, link, data) in &entries {
        list.push(match (link, data) {
            (Some(l), _) if shape.starts_with("hard") => E::Hard(name, l),
            (Some(l), _) => E::Sym(name, l),
            (None, Some(d)) => E::File(name, d),
            _ => unreachable!(),
        });
    }
    raw_tar(&list)
}

/// Small files of an image, concatenated: what the image holds.
fn small_files(root: &Path, image: &str) -> String {
    sh(
        root,
        &[],
        image,
        "for f in $(find / -xdev -type f -size -64k 2>/dev/null); do cat \"$f\"; done; true",
    )
    .stdout()
}

/// The host's /etc/passwd when it differs from busybox's: its presence in an
/// image means a hard link reached the host.
fn host_passwd() -> Option<String> {
    let p = std::fs::read_to_string("/etc/passwd").ok()?;
    (!p.starts_with("root:x:0:0:root:/root:/bin/sh\napp:")).then_some(p)
}

fn check_contained(c: &Canary, root: &Path, image: &str, ran: &Ran, via: &str, shape: &str) {
    c.assert_unchanged();
    if ran.ok() {
        let files = small_files(root, image);
        assert!(
            !files.contains(&c.secret),
            "{via} {shape}: the image holds the secret"
        );
        if let Some(p) = host_passwd() {
            assert!(
                !files.contains(&p),
                "{via} {shape}: the image holds host passwd"
            );
        }
    } else {
        assert!(!ran.timed_out);
        assert_eq!(
            ran.out.status.code(),
            Some(1),
            "{via} {shape}: {}",
            ran.all()
        );
        assert!(ran.err().contains("error"), "{}", ran.all());
    }
    fsck(root);
}

fn tar_via_import(shape: &str) {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let ran = import_bytes(root.path(), &evil_tar(&canary, shape), "evil:1", &[]);
    check_contained(&canary, root.path(), "evil:1", &ran, "import", shape);
}

fn tar_via_load(shape: &str) {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let dir = tempfile::tempdir().unwrap();
    let busybox = std::fs::read(busybox_tar().unwrap()).unwrap();
    let archive = dir.path().join("evil.tar");
    std::fs::write(
        &archive,
        oci_archive("evil:1", &[busybox, evil_tar(&canary, shape)]),
    )
    .unwrap();
    let ran = k(root.path(), &["load", "-i", archive.to_str().unwrap()]);
    check_contained(&canary, root.path(), "evil:1", &ran, "load", shape);
}

fn tar_via_add(shape: &str) {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let ctx = context("FROM box:1\nADD evil.tar /dest/\n");
    std::fs::write(ctx.path().join("evil.tar"), evil_tar(&canary, shape)).unwrap();
    let ran = build(root.path(), ctx.path(), &["-t", "evil:1"]);
    check_contained(&canary, root.path(), "evil:1", &ran, "ADD", shape);
}

#[test]
fn attack_19_tar_dotdot_names_via_import() {
    tar_via_import("dotdot");
}

#[test]
fn attack_19_tar_dotdot_names_via_load() {
    tar_via_load("dotdot");
}

#[test]
fn attack_19_tar_dotdot_names_via_add() {
    tar_via_add("dotdot");
}

#[test]
fn attack_20_tar_absolute_names_via_import() {
    tar_via_import("absolute");
}

#[test]
fn attack_20_tar_absolute_names_via_load() {
    tar_via_load("absolute");
}

#[test]
fn attack_20_tar_absolute_names_via_add() {
    tar_via_add("absolute");
}

#[test]
fn attack_21_tar_symlink_then_write_through_via_import() {
    tar_via_import("symlink");
}

#[test]
fn attack_21_tar_symlink_then_write_through_via_load() {
    tar_via_load("symlink");
}

#[test]
fn attack_21_tar_symlink_then_write_through_via_add() {
    tar_via_add("symlink");
}

#[test]
fn attack_22_tar_hardlink_to_host_file_via_import() {
    tar_via_import("hard-absolute");
}

#[test]
fn attack_22_tar_hardlink_to_host_file_via_load() {
    tar_via_load("hard-absolute");
}

#[test]
fn attack_22_tar_hardlink_to_host_file_via_add() {
    tar_via_add("hard-absolute");
}

#[test]
fn attack_23_tar_hardlink_dotdot_via_import() {
    tar_via_import("hard-dotdot");
}

#[test]
fn attack_23_tar_hardlink_dotdot_via_load() {
    tar_via_load("hard-dotdot");
}

#[test]
fn attack_23_tar_hardlink_dotdot_via_add() {
    tar_via_add("hard-dotdot");
}

/// The kiln binary: what CVE-2019-5736 overwrites.
fn watch_kiln_binary(c: &mut Canary) {
    c.watch(Path::new(env!("CARGO_BIN_EXE_kiln")), 0, true);
}

const OVERWRITE_EXE: &str = "for p in /proc/[0-9]*; do (echo pwned >> $p/exe) 2>/dev/null; (cp /bin/busybox $p/exe) 2>/dev/null; done; ls -l /proc/1/exe; true";

#[test]
fn attack_24_proc_pid_exe_overwrite_from_a_build() {
    let Some(root) = store() else { return };
    let mut canary = Canary::new();
    watch_kiln_binary(&mut canary);
    let ctx = context(&format!("FROM box:1\nRUN {OVERWRITE_EXE}\n"));
    let _ = build(root.path(), ctx.path(), &[]);
    canary.assert_unchanged();
    // kiln still works.
    assert!(k(root.path(), &["images"]).ok());
}

#[test]
fn attack_24_proc_pid_exe_overwrite_from_run() {
    let Some(root) = store() else { return };
    let mut canary = Canary::new();
    watch_kiln_binary(&mut canary);
    let _ = sh(root.path(), &[], "box:1", OVERWRITE_EXE);
    canary.assert_unchanged();
    assert!(k(root.path(), &["images"]).ok());
}

#[test]
fn attack_25_host_processes_are_invisible() {
    let Some(root) = store() else { return };
    let ran = sh(
        root.path(),
        &[],
        "box:1",
        "ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '; echo",
    );
    let stdout = ran.stdout();
    let n: usize = stdout
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(999);
    assert!(n <= 5, "the container sees {n} processes: {}", ran.all());
    // Our own pid is not there (unless the numbers happen to meet).
    let ran = sh(
        root.path(),
        &[],
        "box:1",
        &format!(
            "cat /proc/{}/cmdline 2>/dev/null | tr '\\0' ' '",
            std::process::id()
        ),
    );
    assert!(!ran.stdout().contains("attack"), "{}", ran.all());
}

#[test]
fn attack_26_network_none_has_only_loopback() {
    let Some(root) = store() else { return };
    let ran = sh(
        root.path(),
        &["--network", "none"],
        "box:1",
        "ls /sys/class/net",
    );
    assert_eq!(ran.stdout(), "lo\n", "{}", ran.all());
    let ctx = context("FROM box:1\nRUN --network=none ls /sys/class/net > /nets\n");
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let ran = build(root.path(), ctx.path(), &["-o", &dest]);
    assert!(ran.ok(), "{}", ran.all());
    assert_eq!(
        std::fs::read_to_string(out.path().join("nets")).unwrap(),
        "lo\n"
    );
}

#[test]
fn attack_27_masked_and_read_only_proc_paths() {
    let Some(root) = store() else { return };
    let canary = Canary::new().with_core_pattern();
    let ran = sh(
        root.path(),
        &[],
        "box:1",
        "cat /proc/kcore 2>/dev/null | wc -c; if echo 1 > /proc/sys/vm/drop_caches; then echo W''ROTE; fi; if echo '|/kiln-pwned' > /proc/sys/kernel/core_pattern; then echo W''ROTE; fi; ls /sys/firmware | wc -l; true",
    );
    let lines: Vec<String> = ran.stdout().lines().map(|l| l.trim().to_string()).collect();
    assert_eq!(lines, ["0", "0"], "{}", ran.all());
    assert!(ran.err().contains("read-only file system"), "{}", ran.all());
    canary.assert_unchanged();
}

#[test]
fn attack_28_capabilities_are_dockers_default() {
    let Some(root) = store() else { return };
    let ran = sh(
        root.path(),
        &[],
        "box:1",
        "grep -E '^Cap(Eff|Bnd|Prm)' /proc/self/status",
    );
    assert_eq!(
        ran.stdout(),
        "CapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n",
        "{}",
        ran.all()
    );
    let ctx = context("FROM box:1\nRUN grep CapEff /proc/self/status > /caps\n");
    let out = tempfile::tempdir().unwrap();
    let dest = format!("type=local,dest={}", out.path().display());
    let ran = build(root.path(), ctx.path(), &["-o", &dest]);
    assert!(ran.ok(), "{}", ran.all());
    assert_eq!(
        std::fs::read_to_string(out.path().join("caps")).unwrap(),
        "CapEff:\t00000000a80425fb\n"
    );
}

#[test]
fn attack_29_pids_limit_stops_a_fork_bomb() {
    let Some(root) = store() else { return };
    let mut cmd = kiln();
    cmd.arg("--root").arg(root.path()).args([
        "run",
        "--rm",
        "--pids-limit",
        "16",
        "box:1",
        "sh",
        "-c",
        "for i in $(seq 200); do sleep 2 & done 2>/dev/null; echo spawned-all; wait",
    ]);
    let ran = bounded(&mut cmd, Duration::from_secs(30));
    assert!(!ran.timed_out);
    assert!(
        !ran.stdout().contains("spawned-all") || ran.err().contains("fork"),
        "{}",
        ran.all()
    );
}

#[test]
fn attack_30_volume_target_through_an_image_symlink() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let ctx = context(&format!(
        "FROM box:1\nRUN ln -s /etc /evil && ln -s {} /c\n",
        canary.path_str()
    ));
    let ran = build(root.path(), ctx.path(), &["-t", "sym:1"]);
    assert!(ran.ok(), "{}", ran.all());
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("f"), "from the volume\n").unwrap();
    let w = word();
    for target in [
        format!("/evil/kiln-mnt-{w}"),
        "/c/victim".to_string(),
        "/c/new".into(),
    ] {
        let vol = format!("{}:{target}", host.path().display());
        let ran = sh(
            root.path(),
            &["-v", &vol],
            "sym:1",
            "ls /etc >/dev/null; true",
        );
        assert!(!ran.timed_out);
    }
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_31_copy_destination_through_an_image_symlink_lands_in_the_image() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let w = word();
    let ctx = context(&format!(
        "FROM box:1\nRUN ln -s /etc /e && ln -s {} /c\nCOPY f.txt /e/kiln-copied-{w}\nCOPY f.txt /c/victim/keep\nCOPY f.txt /c/new\n",
        canary.path_str()
    ));
    write(ctx.path(), &[("f.txt", "copied\n")]);
    let ran = build(root.path(), ctx.path(), &["-t", "in:1"]);
    canary.assert_unchanged();
    assert!(ran.ok(), "{}", ran.all());
    let ran = sh(
        root.path(),
        &[],
        "in:1",
        &format!("cat /etc/kiln-copied-{w} {}/victim/keep", canary.path_str()),
    );
    assert_eq!(ran.stdout(), "copied\ncopied\n", "{}", ran.all());
    fsck(root.path());
}

#[test]
fn attack_32_copy_of_two_dirs_symlink_then_write_through() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let ctx = context("FROM box:1\nCOPY a b /dst/\n");
    std::fs::create_dir_all(ctx.path().join("a")).unwrap();
    symlink(canary.path(), ctx.path().join("a/sub")).unwrap();
    symlink(canary.climbing(), ctx.path().join("a/rel")).unwrap();
    write(
        ctx.path(),
        &[
            ("b/sub/f", "pwned\n"),
            ("b/sub/victim/keep", "pwned\n"),
            ("b/rel/g", "pwned\n"),
        ],
    );
    let ran = build(root.path(), ctx.path(), &["-t", "two:1"]);
    canary.assert_unchanged();
    assert!(!ran.timed_out);
    fsck(root.path());
}

#[test]
fn attack_33_add_tar_symlink_then_entry_through_it() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let cp = canary.path_str();
    let climb = canary.climbing();
    let tar = raw_tar(&[
        E::Sym("l", &cp),
        E::File("l/f", b"pwned\n"),
        E::Dir("l/made/"),
        E::Sym("r", &climb),
        E::File("r/f", b"pwned\n"),
    ]);
    for dest in ["/", "/dest/"] {
        let ctx = context(&format!("FROM box:1\nADD evil.tar {dest}\n"));
        std::fs::write(ctx.path().join("evil.tar"), &tar).unwrap();
        let ran = build(root.path(), ctx.path(), &[]);
        assert!(!ran.timed_out);
    }
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_34_dockerignore_is_not_bypassed_with_dotdot() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    for src in [
        "sub/../secret.txt",
        "./sub/../secret.txt",
        "sub/../secret*",
        "/sub/../secret.txt",
    ] {
        let ctx = context(&format!("FROM box:1\nCOPY {src} /x\n"));
        write(
            ctx.path(),
            &[
                ("secret.txt", &format!("{}\n", canary.secret)),
                (".dockerignore", "secret.txt\n"),
                ("sub/keep", "k\n"),
            ],
        );
        let ran = build(root.path(), ctx.path(), &["-t", "ign:1"]);
        if ran.ok() {
            let got = sh(root.path(), &[], "ign:1", "cat /x 2>/dev/null; true");
            assert!(
                !got.stdout().contains(&canary.secret),
                "{src}: ignored file copied"
            );
        } else {
            refused(&ran, &["not found", "no source files", "no such file"]);
        }
    }
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_35_copy_from_outside_the_context_is_refused() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let outer = tempfile::tempdir().unwrap();
    let ctx = outer.path().join("ctx");
    write(
        outer.path(),
        &[
            ("outside", &format!("{}\n", canary.secret)),
            ("ctx/keep", "k\n"),
        ],
    );
    for src in ["../outside", "../../../../../../../..{canary}/secret"] {
        let src = src.replace("{canary}", &canary.path_str());
        write(
            &ctx,
            &[("Dockerfile", &format!("FROM box:1\nCOPY {src} /x\n"))],
        );
        let ran = build(root.path(), &ctx, &["-t", "out:1"]);
        assert!(!ran.all().contains(&canary.secret));
        refused(&ran, &["not found", "outside", "no such file"]);
    }
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_36_cache_mount_id_with_dotdot_stays_in_the_store() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    for id in [
        format!("{}/cachedir", canary.climbing()),
        format!("{}/victim", canary.climbing()),
        format!("{}/cache-abs", canary.path_str()),
    ] {
        let ctx = context(&format!(
            "FROM box:1\nRUN --mount=type=cache,id={id},target=/c touch /c/pwned; rm -rf /c/keep; true\n"
        ));
        let ran = build(root.path(), ctx.path(), &[]);
        assert!(!ran.timed_out);
    }
    canary.assert_unchanged();
    fsck(root.path());
}

#[test]
fn attack_37_secret_mounts_stay_out_of_layers() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let ctx = context(
        "FROM box:1\nRUN --mount=type=secret,id=s cat /run/secrets/s > /dev/null && cp /run/secrets/s /tmp/copy-of-nothing 2>/dev/null; rm -f /tmp/copy-of-nothing; echo used > /used\n",
    );
    let sfile = canary.path().join("secret");
    let secret_arg = format!("id=s,src={}", sfile.display());
    let ran = build(
        root.path(),
        ctx.path(),
        &["-t", "sec:1", "--secret", &secret_arg],
    );
    assert!(ran.ok(), "{}", ran.all());
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("sec.tar");
    let r = k(
        root.path(),
        &[
            "save",
            "sec:1",
            "-o",
            saved.to_str().unwrap(),
            "--compression",
            "none",
        ],
    );
    assert!(r.ok(), "{}", r.all());
    let bytes = std::fs::read(&saved).unwrap();
    let needle = canary.secret.as_bytes();
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "the secret is in the saved image"
    );
    let inspect = k(root.path(), &["inspect", "sec:1"]);
    assert!(!inspect.stdout().contains(&canary.secret));
    let ran = sh(
        root.path(),
        &[],
        "sec:1",
        "ls -a /run/secrets 2>/dev/null; cat /used",
    );
    assert!(
        !ran.stdout().contains(" s\n") && !ran.stdout().lines().any(|l| l == "s"),
        "{}",
        ran.all()
    );
    canary.assert_unchanged();
    fsck(root.path());
}
