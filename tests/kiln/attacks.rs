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
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
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
    /// No test adds or removes a user while /etc is watched.
    _etc: std::sync::RwLockReadGuard<'static, ()>,
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
        let etc = crate::util::ETC_USERS
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut c = Canary {
            _etc: etc,
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
        // The symlink resolves inside the context, where nothing is there:
        // refused for that reason, not for another that hid the attack.
        let ran = build(root.path(), ctx.path(), &[]);
        refused(&ran, &["not found in the build context"]);
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
    // The step ran its attack to the end (its `ls` of the init's exe).
    let ran = build(root.path(), ctx.path(), &[]);
    assert!(
        ran.ok() && ran.all().contains("/proc/1/exe"),
        "{}",
        ran.all()
    );
    canary.assert_unchanged();
    // kiln still works.
    assert!(k(root.path(), &["images"]).ok());
}

#[test]
fn attack_24_proc_pid_exe_overwrite_from_run() {
    let Some(root) = store() else { return };
    let mut canary = Canary::new();
    watch_kiln_binary(&mut canary);
    let ran = sh(root.path(), &[], "box:1", OVERWRITE_EXE);
    assert!(
        ran.ok() && ran.stdout().contains("/proc/1/exe"),
        "{}",
        ran.all()
    );
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

// ---------------------------------------------------------------------------
// Issue 25: the host's other users, the caller's own shell, commit, sockets
// ---------------------------------------------------------------------------

/// A user of the host made for one test (no home, no login shell) and
/// removed when dropped: never `nobody` with a shell left behind.
struct ThrowawayUser {
    name: String,
    uid: u32,
}

impl ThrowawayUser {
    fn new() -> Option<ThrowawayUser> {
        if !crate::util::need_tool("useradd", "the other-user attacks make a user of their own") {
            return None;
        }
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("kiln-atk-{}-{n}", std::process::id());
        let _etc = crate::util::changing_users();
        let out = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", &name])
            .output()
            .expect("useradd");
        assert!(out.status.success(), "useradd: {}", text(&out.stderr));
        let id = Command::new("id").args(["-u", &name]).output().unwrap();
        let uid = text(&id.stdout).trim().parse().expect("uid");
        Some(ThrowawayUser { name, uid })
    }

    /// `runuser -u USER -- argv...`, bounded.
    fn run(&self, argv: &[&str], env: &[(&str, &str)]) -> Ran {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", &self.name, "--"]).args(argv);
        for (k, v) in env {
            cmd.env(k, v);
        }
        bounded(&mut cmd, LIMIT)
    }
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        let _etc = crate::util::changing_users();
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// Every path below `dir` whose name is `name` (as root).
fn find_named(dir: &Path, name: &str, into: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if e.file_name() == name {
            into.push(p.clone());
        }
        if ft.is_dir() && !ft.is_symlink() {
            find_named(&p, name, into);
        }
    }
}

/// Issue 25.1 (moby's CVE-2021-41091 class): a set-uid-root file in an
/// image snapshot, a running container's root or a named volume, and a
/// container's config with a password, are out of reach of the host's
/// other users; an old store's loose modes are repaired when it opens;
/// the volume still works for the container's own non-root user.
#[test]
fn attack_38_other_users_cannot_run_set_uid_files_or_read_configs_in_the_store() {
    if !need_root("the store attack needs root and a user of its own") {
        return;
    }
    let Some(tar) = busybox_tar() else { return };
    let Some(user) = ThrowawayUser::new() else {
        return;
    };
    // A store where another user can reach its parent, as /var/lib is.
    let outer = tempfile::tempdir().unwrap();
    std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = outer.path().join("store");
    let ran = k(&root, &["import", tar.to_str().unwrap(), "box:1"]);
    assert!(ran.ok(), "{}", ran.all());
    // An older kiln left it open to everyone: repaired on the next open.
    for d in ["", "snapshots", "containers"] {
        let p = root.join(d);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let ctx = context("FROM box:1\nRUN cp /bin/busybox /bin/suid && chmod 4755 /bin/suid\n");
    let ran = build(&root, ctx.path(), &["-t", "suid:1"]);
    assert!(ran.ok(), "{}", ran.all());
    let ran = k(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "victim",
            "-e",
            "PASSWORD=hunter2-canary",
            "suid:1",
            "sh",
            "-c",
            "cp /bin/suid /bin/suid-live && chmod 4755 /bin/suid-live && echo hunter2-canary && exec sleep 1000",
        ],
    );
    assert!(ran.ok(), "{}", ran.all());
    let ran = sh(
        &root,
        &["-v", "vol1:/v"],
        "suid:1",
        "cp /bin/suid /v/suid-vol && chmod 4755 /v/suid-vol",
    );
    assert!(ran.ok(), "{}", ran.all());
    // The volume works for the container's own users all the same.
    let ran = sh(&root, &["-u", "1000", "-v", "vol1:/v"], "suid:1", "ls /v");
    assert!(
        ran.ok() && ran.stdout().contains("suid-vol"),
        "{}",
        ran.all()
    );
    // Wait until the live copy exists (the container's log says so).
    let deadline = Instant::now() + LIMIT;
    while !k(&root, &["logs", "victim"]).stdout().contains("hunter2") {
        assert!(Instant::now() < deadline, "the container did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut targets = Vec::new();
    for name in ["suid", "suid-live", "suid-vol"] {
        find_named(&root, name, &mut targets);
    }
    assert!(
        targets.len() >= 3,
        "the set-uid copies must be in the store: {targets:?}"
    );
    let mut configs = Vec::new();
    find_named(&root.join("containers"), "config.json", &mut configs);
    find_named(&root.join("containers"), "ctr.log", &mut configs);
    assert!(configs.len() >= 2, "{configs:?}");
    for t in &targets {
        let ran = user.run(&[t.to_str().unwrap(), "id"], &[]);
        assert!(
            !ran.ok() && !ran.all().contains("euid=0"),
            "another user ran {} as root: {}",
            t.display(),
            ran.all()
        );
    }
    for c in &configs {
        let ran = user.run(&["cat", c.to_str().unwrap()], &[]);
        assert!(
            !ran.ok() && !ran.all().contains("hunter2"),
            "another user read {}: {}",
            c.display(),
            ran.all()
        );
    }
    // And the modes that keep them out.
    assert_eq!(mode_of(&root), 0o700, "the store's root");
    for d in [
        "snapshots",
        "containers",
        "volumes",
        "blobs",
        "tmp",
        "cache",
    ] {
        assert_eq!(mode_of(&root.join(d)), 0o700, "{d}");
    }
    for c in &configs {
        assert_eq!(mode_of(c), 0o600, "{}", c.display());
    }
    let _ = k(&root, &["rm", "-f", "victim"]);
    fsck(&root);
}

/// A static program that pushes `echo INJECTED` into each of its standard
/// descriptors with TIOCSTI and says, per descriptor, what the kernel did.
fn tiocsti_program(dir: &Path) -> Option<PathBuf> {
    if !crate::util::need_tool("cc", "the TIOCSTI attack compiles its program")
        || !crate::util::need_tool("script", "the TIOCSTI attack runs under a pty")
        || !crate::util::need_tool("bash", "the TIOCSTI attack reads the pty with bash")
    {
        return None;
    }
    let src = dir.join("sti.c");
    std::fs::write(
        &src,
        r#"#include <sys/ioctl.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
int main(void) {
    const char *cmd = "echo INJECTED\n";
    for (int fd = 0; fd < 3; fd++) {
        int ok = 1;
        for (const char *c = cmd; *c; c++)
            if (ioctl(fd, TIOCSTI, c) != 0) { ok = 0; break; }
        printf("fd %d: %s\n", fd, ok ? "pushed" : strerror(errno));
    }
    return 0;
}
"#,
    )
    .unwrap();
    let bin = dir.join("sti");
    let out = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("cc");
    if !out.status.success() {
        assert!(
            std::env::var_os("CI").is_none(),
            "cc -static failed: {}",
            text(&out.stderr)
        );
        eprintln!(
            "skipping: cc -static failed (libc6-dev?): {}",
            text(&out.stderr)
        );
        return None;
    }
    Some(bin)
}

/// Runs `script` (a bash command line) under a fresh pty whose input stays
/// open (no end of input is typed into it) until the command ends; returns
/// what the pty showed.
fn under_pty(script: &str) -> String {
    // `script -c` runs the line with $SHELL, which is dash under CI's
    // runner: `read -t 0` (is input queued?) is bash's.
    let mut child = Command::new("script")
        .args(["-qec", script, "/dev/null"])
        .env("SHELL", "/bin/bash")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let input = child.stdin.take();
    let mut so = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        let _ = tx.send(b);
    });
    let out = match rx.recv_timeout(LIMIT) {
        Ok(b) => b,
        Err(_) => {
            kill_tree(child.id());
            panic!("{script} ran over {LIMIT:?}");
        }
    };
    let _ = child.wait();
    drop(input);
    text(&out).replace('\r', "")
}

/// Issue 25.2: a container without `-t` (`run`, `run -i`, `exec`, `exec
/// -i`) cannot queue input into the caller's terminal: its descriptors are
/// pipes and its session is its own. The same program on the host does
/// (else the kernel forbids TIOCSTI and there is nothing to test).
#[test]
fn attack_39_a_container_without_t_cannot_type_into_the_callers_shell() {
    let Some(root) = store() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(sti) = tiocsti_program(dir.path()) else {
        return;
    };
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let check = "; if read -t 0; then read -r l; echo \"TTY-HAS-INPUT [$l]\"; else echo CLEAN; fi";
    // Its report stays on the pty: a kernel that refuses TIOCSTI says so.
    let host = under_pty(&format!("{}{check}", sti.display()));
    if !host.contains("TTY-HAS-INPUT [echo INJECTED]") {
        // Kernels from 6.2 with dev.tty.legacy_tiocsti=0: there is no
        // attack to refuse (the one skip CI allows, as it says why).
        assert!(host.contains("fd 0: "), "the program did not run: {host}");
        eprintln!("skipping: this kernel refuses TIOCSTI outright: {host}");
        return;
    }
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let r = root.path().display();
    let bind = format!("{}:/x:ro", dir.path().display());
    let ran = k(
        root.path(),
        &[
            "run", "-d", "--name", "held", "-v", &bind, "box:1", "sleep", "1000",
        ],
    );
    assert!(ran.ok(), "{}", ran.all());
    for how in [
        format!("run --rm -v {bind} box:1 /x/sti"),
        format!("run --rm -i -v {bind} box:1 /x/sti"),
        "exec held /x/sti".to_string(),
        "exec -i held /x/sti".to_string(),
    ] {
        let shown = under_pty(&format!("{kiln} --root {r} {how}{check}"));
        assert!(
            shown.contains("CLEAN") && !shown.contains("pushed"),
            "kiln {how} let the container type into the caller's terminal:\n{shown}"
        );
        assert!(
            shown.contains("fd 1: Inappropriate ioctl"),
            "kiln {how}: the container's output must be a pipe:\n{shown}"
        );
    }
    let _ = k(root.path(), &["rm", "-f", "held"]);
}

/// Issue 25.3: `commit --pause=false` of a container that keeps swapping a
/// directory of its own for a symlink to a host directory reads nothing
/// of the host: the upper directory is walked through held descriptors.
/// Then a default (paused) commit of a container that keeps forking
/// succeeds every time: the freeze holds.
#[test]
fn attack_40_commit_reads_no_host_file_through_a_swapped_symlink() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    // A big file first, so that the walk is inside /d long after listing
    // it; the swap puts the canary directory (which holds `secret`) there.
    let script = format!(
        "mkdir /d && head -c 30000000 /dev/zero > /d/a-big && echo inside > /d/secret && echo ready && \
         while :; do mv /d /e; ln -s {} /d; rm /d; mv /e /d; done",
        canary.path_str()
    );
    let ran = k(
        root.path(),
        &[
            "run", "-d", "--name", "swapper", "box:1", "sh", "-c", &script,
        ],
    );
    assert!(ran.ok(), "{}", ran.all());
    let deadline = Instant::now() + LIMIT;
    while !k(root.path(), &["logs", "swapper"])
        .stdout()
        .contains("ready")
    {
        assert!(Instant::now() < deadline, "the swapper did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut committed = 0;
    for i in 0..12 {
        let tag = format!("swapped:{i}");
        let ran = k(root.path(), &["commit", "--pause=false", "swapper", &tag]);
        committed += usize::from(ran.ok());
    }
    assert!(committed > 0, "no commit succeeded");
    let needle = canary.secret.as_bytes();
    let mut blobs = Vec::new();
    for e in std::fs::read_dir(root.path().join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let bytes = std::fs::read(e.path()).unwrap();
        let bytes = gunzip_if(&bytes);
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "a committed layer holds the host's secret: {}",
            e.path().display()
        );
        blobs.push(e.path());
    }
    let _ = k(root.path(), &["rm", "-f", "swapper"]);
    // A container that forks all the time: the freezer catches them all.
    let ran = k(
        root.path(),
        &[
            "run",
            "-d",
            "--name",
            "forker",
            "box:1",
            "sh",
            "-c",
            "echo ready; while :; do (true &) ; echo x > /f; done",
        ],
    );
    assert!(ran.ok(), "{}", ran.all());
    let deadline = Instant::now() + LIMIT;
    while !k(root.path(), &["logs", "forker"])
        .stdout()
        .contains("ready")
    {
        assert!(Instant::now() < deadline, "the forker did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..3 {
        let tag = format!("forked:{i}");
        let ran = k(root.path(), &["commit", "forker", &tag]);
        assert!(ran.ok(), "a paused commit failed: {}", ran.all());
    }
    let _ = k(root.path(), &["rm", "-f", "forker"]);
    canary.assert_unchanged();
    fsck(root.path());
}

/// Issue 25.4: a name that a layer reserves for deletions (`.wh.`), made by
/// a RUN, a COPY or a container, is refused with its name when the layer
/// is made (kiln would refuse its own image later); nothing is tagged.
#[test]
fn attack_41_whiteout_shaped_names_are_refused_when_a_layer_is_made() {
    let Some(root) = store() else { return };
    for (dockerfile, name) in [
        ("FROM box:1\nRUN touch /tmp/.wh..\n", "tmp/.wh.."),
        ("FROM box:1\nRUN touch '/.wh...'\n", ".wh..."),
        ("FROM box:1\nRUN mkdir -p /a && touch /a/.wh.b\n", "a/.wh.b"),
        ("FROM box:1\nCOPY . /ctx/\n", "ctx/.wh.x"),
    ] {
        let ctx = context(dockerfile);
        write(ctx.path(), &[(".wh.x", "x")]);
        let ran = build(root.path(), ctx.path(), &["-t", "wh:1"]);
        refused(&ran, &[".wh."]);
        assert!(
            ran.stderr().contains(name),
            "the error must name {name}: {}",
            ran.stderr()
        );
        let images = k(root.path(), &["images"]);
        assert!(!images.stdout().contains("wh "), "{}", images.all());
    }
    let ran = k(
        root.path(),
        &[
            "run",
            "--name",
            "whc",
            "box:1",
            "sh",
            "-c",
            "touch /.wh..wh..opq2 '/.wh..'",
        ],
    );
    assert!(ran.ok(), "{}", ran.all());
    let ran = k(root.path(), &["commit", "whc", "whc:1"]);
    refused(&ran, &[".wh."]);
    assert!(ran.stderr().contains(".wh.."), "{}", ran.stderr());
    let _ = k(root.path(), &["rm", "-f", "whc"]);
    fsck(root.path());
}

/// Starts `kiln system service --socket SOCKET` through `sh -c` with
/// `prefix` (a umask), and waits until it listens or ends.
fn service_at(root: &Path, socket: &Path, prefix: &str) -> (std::process::Child, bool) {
    let cmd = format!(
        "{prefix} exec {} --root {} system service --timeout 0 --socket {}",
        env!("CARGO_BIN_EXE_kiln"),
        root.display(),
        socket.display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &cmd])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + LIMIT;
    loop {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return (child, true);
        }
        if child.try_wait().unwrap().is_some() {
            return (child, false);
        }
        assert!(
            Instant::now() < deadline,
            "the service neither listened nor ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 25.5: the API socket's directory is made 0700 even under
/// `umask 000`; one another user owns, or anyone can write, is refused;
/// rootless without XDG_RUNTIME_DIR, no shared temp directory is used.
#[test]
fn attack_42_the_api_socket_directory_is_the_owners_alone() {
    let Some(root) = store() else { return };
    let Some(user) = ThrowawayUser::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("a/b/docker.sock");
    let (mut child, listening) = service_at(root.path(), &socket, "umask 000;");
    assert!(listening, "the service did not listen");
    assert_eq!(mode_of(&dir.path().join("a/b")), 0o700);
    assert_eq!(mode_of(&dir.path().join("a")), 0o755);
    assert_eq!(mode_of(&socket) & 0o007, 0, "the socket is not for others");
    let _ = child.kill();
    let _ = child.wait();
    for (how, owner, mode, says) in [
        ("another user's", Some(user.uid), 0o700, "belongs to uid"),
        (
            "a world-writable",
            None,
            0o777,
            "other users of the host can read or write it",
        ),
    ] {
        let d = dir.path().join(format!("dir-{mode:o}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&d, Some(uid), None).unwrap();
        }
        let socket = d.join("docker.sock");
        let (child, listening) = service_at(root.path(), &socket, "");
        let out = child.wait_with_output().unwrap();
        assert!(
            !listening && !out.status.success(),
            "{how} directory was used"
        );
        assert!(
            text(&out.stderr).contains(says),
            "{how} directory: {}",
            text(&out.stderr)
        );
        assert!(!socket.exists(), "{how} directory got a socket");
    }
    // Rootless with no XDG_RUNTIME_DIR: refused, and no /tmp/kiln-UID.
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store_dir = home.path().join("store");
    std::fs::create_dir(&store_dir).unwrap();
    std::os::unix::fs::chown(&store_dir, Some(user.uid), None).unwrap();
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let ran = user.run(
        &[
            "env",
            "-u",
            "XDG_RUNTIME_DIR",
            kiln,
            "--root",
            store_dir.to_str().unwrap(),
            "system",
            "service",
            "--timeout",
            "0",
        ],
        &[],
    );
    assert!(!ran.ok(), "{}", ran.all());
    assert!(ran.stderr().contains("XDG_RUNTIME_DIR"), "{}", ran.all());
    let shared = std::env::temp_dir().join(format!("kiln-{}", user.uid));
    assert!(!shared.exists(), "{} was made", shared.display());
}

/// Issue 25.6: `kiln serve` refuses an empty token or webhook secret (one
/// would let every request through) at `--check` and at start, and warns
/// of a listener beyond loopback that asks no token.
#[test]
fn attack_43_kiln_serve_refuses_empty_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "listen = \"127.0.0.1:0\"\ntoken = \"\"\n",
            "an empty token would let any request through",
        ),
        (
            "listen = \"127.0.0.1:0\"\ntoken = \"t\"\n[[target]]\nname = \"a\"\ncontext = \"/x\"\ntriggers = [\"push\"]\nwebhook_secret = \"\"\n",
            "an empty secret would accept an unsigned push",
        ),
    ];
    for (config, says) in cases {
        let path = dir.path().join("kiln-serve.toml");
        std::fs::write(&path, config).unwrap();
        for check in [true, false] {
            let mut cmd = kiln();
            cmd.arg("--root")
                .arg(dir.path().join("store"))
                .args(["serve", "--config"])
                .arg(&path);
            if check {
                cmd.arg("--check");
            }
            let ran = bounded(&mut cmd, LIMIT);
            assert!(!ran.ok(), "{config}: {}", ran.all());
            assert!(ran.stderr().contains(says), "{config}: {}", ran.all());
        }
    }
    let path = dir.path().join("open.toml");
    std::fs::write(&path, "listen = \"0.0.0.0:8080\"\n").unwrap();
    let ran = k(
        dir.path(),
        &["serve", "--config", path.to_str().unwrap(), "--check"],
    );
    assert!(ran.ok(), "{}", ran.all());
    assert!(ran.stderr().contains("no token is set"), "{}", ran.all());
}

// ---------------------------------------------------------------------------
// Issue 25.7: the container CVE classes of 2024-2026, one test per class
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// 38-: one test per CVE class of issue 25 section 7 (runc, BuildKit, Buildah)
// ---------------------------------------------------------------------------

/// A container started with `run -d`, removed (killed) when dropped, even
/// when the test panics.
struct Detached<'a> {
    root: &'a Path,
    name: String,
}

impl<'a> Detached<'a> {
    /// `kiln run -d --name NAME flags... box:1 sh -c script`.
    fn start(root: &'a Path, name: &str, flags: &[&str], script: &str) -> Detached<'a> {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(flags);
        args.extend(["box:1", "sh", "-c", script]);
        let ran = k(root, &args);
        assert!(ran.ok(), "starting {name}: {}", ran.all());
        Detached {
            root,
            name: name.to_string(),
        }
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        let mut cmd = kiln();
        cmd.arg("--root")
            .arg(self.root)
            .args(["rm", "-f", &self.name]);
        let _ = bounded(&mut cmd, LIMIT);
    }
}

/// The host directory of named volume `name` (`kiln volume inspect`).
fn volume_path(root: &Path, name: &str) -> PathBuf {
    let ran = k(root, &["volume", "inspect", name]);
    assert!(ran.ok(), "{}", ran.all());
    let v: serde_json::Value = serde_json::from_str(&ran.stdout()).unwrap();
    PathBuf::from(v[0]["Mountpoint"].as_str().expect("a Mountpoint"))
}

/// Waits (bounded) until `path` exists: an event a container signals.
fn wait_for_path(path: &Path, limit: Duration) {
    let until = Instant::now() + limit;
    while !path.exists() {
        assert!(Instant::now() < until, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `kiln --root ROOT args...` stopped after `limit`, not asserted: the
/// caller decides what a time-out means.
fn k_within(root: &Path, args: &[&str], limit: Duration) -> Ran {
    let mut cmd = kiln();
    cmd.arg("--root").arg(root).args(args);
    bounded(&mut cmd, limit)
}

/// A build that must end by itself within `limit` (a hang is the bug).
fn build_within(root: &Path, ctx: &Path, extra: &[&str], limit: Duration, what: &str) -> Ran {
    let mut args = vec!["build", "--progress=plain", "--no-cache"];
    args.extend(extra);
    args.push(ctx.to_str().unwrap());
    let ran = k_within(root, &args, limit);
    assert!(
        !ran.timed_out,
        "{what}: the build hung (killed after {limit:?}): {}",
        ran.all()
    );
    ran
}

/// A directory under /tmp that kiln is told about only through an attack
/// (a decoy or a host FIFO), watched by `canary` from now on.
fn watched_dir(canary: &mut Canary, prefix: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    write(d.path(), files);
    canary.watch(d.path(), 4, true);
    d
}

// --- runc CVE-2024-45310: mkdir races in a shared volume ---------------------

/// runc's CVE-2024-45310, the class: the mount point of a nested mount is
/// made inside a volume that a running container shares, while that
/// container swaps a directory on the way between a real one and a symlink
/// out (absolute to the host, climbing, `/`). Whatever is made lands in the
/// new container's root or nowhere, never on the host; nothing hangs.
#[test]
fn attack_44_mount_points_made_in_a_shared_volume_stay_in_the_container() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let w = word();
    let (vol, inner) = (format!("race-{w}"), format!("inner-{w}"));
    assert!(k(root.path(), &["volume", "create", &vol]).ok());
    let host = volume_path(root.path(), &vol);
    let data = format!("{vol}:/data");
    let victim = format!("{}/victim", canary.path_str());
    let climb = format!("{}/victim", canary.climbing());
    let swap = format!(
        "touch /data/started; i=0; while [ ! -e /data/stop ] && [ $i -lt 20000 ]; do \
         rm -rf /data/sub; ln -s {victim} /data/sub; rm -f /data/sub; \
         ln -s {climb} /data/sub; rm -f /data/sub; ln -s / /data/sub; rm -f /data/sub; \
         mkdir /data/sub; i=$((i+1)); done"
    );
    let swapper = Detached::start(root.path(), &format!("swapper-{w}"), &["-v", &data], &swap);
    wait_for_path(&host.join("started"), Duration::from_secs(20));
    let deeper = format!("{inner}:/data/sub/made/deeper");
    let start = Instant::now();
    let mut rounds = 0;
    while rounds < 30 && start.elapsed() < Duration::from_secs(40) {
        // It may fail (the path kept changing): it must not hang or land outside.
        let _ = k(
            root.path(),
            &["run", "--rm", "-v", &data, "-v", &deeper, "box:1", "true"],
        );
        rounds += 1;
    }
    std::fs::write(host.join("stop"), "").unwrap();
    drop(swapper);
    assert!(
        !canary.path().join("victim/made").exists(),
        "a mount point was made on the host"
    );
    canary.assert_unchanged();
    fsck(root.path());
}

/// The same race in a build: two stages share a cache mount; one swaps
/// /c/sub for symlinks out while the other's steps mount a tmpfs at
/// /c/sub/made/t (its mount point made inside the shared cache).
#[test]
fn attack_44_mount_points_made_in_a_shared_cache_stay_in_the_step() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let w = word();
    let c = format!("type=cache,id=race-{w},target=/c");
    let victim = format!("{}/victim", canary.path_str());
    let climb = format!("{}/victim", canary.climbing());
    let nested = format!("--mount={c} --mount=type=tmpfs,target=/c/sub/made/t");
    let ctx = context(&format!(
        "FROM box:1 AS swap\n\
         RUN --mount={c} touch /c/started; i=0; while [ ! -e /c/stop ] && [ $i -lt 3000 ]; do rm -rf /c/sub; ln -s {victim} /c/sub; rm -f /c/sub; ln -s {climb} /c/sub; rm -f /c/sub; mkdir /c/sub; i=$((i+1)); done; echo swapped > /done\n\
         FROM box:1 AS use\n\
         RUN --mount={c} i=0; while [ ! -e /c/started ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n\
         RUN {nested} echo 1 > /t1 || true\n\
         RUN {nested} echo 2 > /t2 || true\n\
         RUN {nested} echo 3 > /t3 || true\n\
         RUN {nested} echo 4 > /t4 || true\n\
         RUN --mount={c} touch /c/stop; echo used > /done\n\
         FROM box:1\nCOPY --from=swap /done /a\nCOPY --from=use /done /b\n"
    ));
    let _ = build_within(root.path(), ctx.path(), &[], LIMIT, "shared cache race");
    assert!(!canary.path().join("victim/made").exists());
    canary.assert_unchanged();
    fsck(root.path());
}

// --- runc CVE-2025-31133: masked paths from a swapped /dev/null --------------

const MASKS_ARE_DEV_NULL: &str = "for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/latency_stats; do \
     [ -e $p ] || continue; if [ -c $p ]; then echo $p char; else echo $p NOT-CHAR; fi; \
     (echo '|/kiln-pwned-mask' > $p); done; true";

/// runc's CVE-2025-31133, the class: the source of every masked path is a
/// real /dev/null, never a /dev/null a container can replace. Here /dev of
/// the new container is a volume whose `null`, `zero` and `full` point at
/// core_pattern: first planted, then swapped by a running container while
/// new containers start. Each mask stays a character device, and writing
/// to it changes no host sysctl.
#[test]
fn attack_45_masked_paths_never_come_from_a_containers_dev_null() {
    let Some(root) = store() else { return };
    let canary = Canary::new().with_core_pattern();
    let w = word();
    let vol = format!("dev-{w}");
    assert!(k(root.path(), &["volume", "create", &vol]).ok());
    let host = volume_path(root.path(), &vol);
    for name in ["null", "zero", "full"] {
        symlink("/proc/sys/kernel/core_pattern", host.join(name)).unwrap();
    }
    let dev = format!("{vol}:/dev");
    let ran = sh(root.path(), &["-v", &dev], "box:1", MASKS_ARE_DEV_NULL);
    assert!(!ran.stdout().contains("NOT-CHAR"), "{}", ran.all());
    // Which masked paths exist depends on the kernel: one at least.
    assert!(ran.stdout().contains(" char\n"), "{}", ran.all());
    canary.assert_unchanged();
    // The race: a container sharing that /dev swaps null to and fro.
    let swap = "touch /dev/started; i=0; while [ ! -e /dev/stop ] && [ $i -lt 20000 ]; do \
                rm -f /dev/null; ln -s /proc/sys/kernel/core_pattern /dev/null; rm -f /dev/null; \
                ln -s /proc/self/fd/1 /dev/null; i=$((i+1)); done";
    let swapper = Detached::start(root.path(), &format!("devswap-{w}"), &["-v", &dev], swap);
    wait_for_path(&host.join("started"), Duration::from_secs(20));
    for round in 0..10 {
        let ran = sh(root.path(), &["-v", &dev], "box:1", MASKS_ARE_DEV_NULL);
        assert!(
            !ran.stdout().contains("NOT-CHAR"),
            "round {round}: {}",
            ran.all()
        );
    }
    std::fs::write(host.join("stop"), "").unwrap();
    drop(swapper);
    canary.assert_unchanged();
    fsck(root.path());
}

// --- runc CVE-2025-52565: /dev/console and the pty ---------------------------

/// `kiln --root ROOT args...` on a terminal (`script` gives one), bounded.
fn on_a_tty(root: &Path, args: &str) -> Ran {
    let inner = format!(
        "{} --root {} {args}; echo host-exit=$?",
        env!("CARGO_BIN_EXE_kiln"),
        root.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &inner, "/dev/null"]).env("NO_COLOR", "1");
    bounded(&mut cmd, LIMIT)
}

/// runc's CVE-2025-52565, the class: with `-t`, nothing the container can
/// replace (its /dev/console, /dev/ptmx, /dev/pts: planted through a /dev
/// volume, or swapped by the container's own process while `exec -t`
/// starts) turns the console set-up into a mount or an open of a
/// procfs file: core_pattern stays, /proc/sys stays read-only and nothing
/// is mounted on core_pattern.
#[test]
fn attack_46_console_set_up_cannot_be_redirected() {
    let Some(root) = store() else { return };
    if !crate::util::need_tool("script", "util-linux script gives the test a terminal") {
        return;
    }
    let canary = Canary::new().with_core_pattern();
    let w = word();
    // Planted: /dev is a volume holding symlinks where the pty set-up looks.
    let vol = format!("con-{w}");
    assert!(k(root.path(), &["volume", "create", &vol]).ok());
    let host = volume_path(root.path(), &vol);
    for name in ["console", "ptmx", "tty"] {
        symlink("/proc/sys/kernel/core_pattern", host.join(name)).unwrap();
    }
    symlink("/proc/sys/kernel", host.join("pts")).unwrap();
    let ran = on_a_tty(
        root.path(),
        &format!("run --rm -t -v {vol}:/dev box:1 sh -c 'echo kiln-pwned-tty; tty'"),
    );
    assert!(!ran.timed_out, "{}", ran.all());
    canary.assert_unchanged();
    // Swapped: the container replaces its /dev/console and /dev/ptmx in a
    // loop while `exec -t` opens a pty in it.
    let swap = "touch /tmp/started; i=0; while [ $i -lt 100000 ]; do \
                rm -f /dev/console /dev/ptmx; ln -s /proc/sys/kernel/core_pattern /dev/console; \
                ln -s /proc/sys/kernel/core_pattern /dev/ptmx; rm -f /dev/console /dev/ptmx; \
                ln -s pts/ptmx /dev/ptmx; i=$((i+1)); done";
    let name = format!("con-{w}");
    let c = Detached::start(root.path(), &name, &[], swap);
    let until = Instant::now() + Duration::from_secs(20);
    while !k(root.path(), &["exec", &name, "test", "-e", "/tmp/started"]).ok() {
        assert!(Instant::now() < until, "the container never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..5 {
        let ran = on_a_tty(
            root.path(),
            &format!("exec -t {name} sh -c 'echo kiln-pwned-tty; tty'"),
        );
        assert!(!ran.timed_out, "{}", ran.all());
    }
    let ran = k(
        root.path(),
        &[
            "exec",
            &name,
            "sh",
            "-c",
            "grep -c core_pattern /proc/self/mountinfo; echo x > /proc/sys/kernel/core_pattern",
        ],
    );
    assert_eq!(
        ran.stdout().trim(),
        "0",
        "a mount on core_pattern: {}",
        ran.all()
    );
    assert!(ran.err().contains("read-only file system"), "{}", ran.all());
    drop(c);
    canary.assert_unchanged();
    fsck(root.path());
}

// --- runc CVE-2025-52881: procfs writes ---------------------------------------

/// runc's CVE-2025-52881, the class: the only procfs files kiln writes for
/// a container (its sysctls) are the container's namespaced ones, whatever
/// the key spells and whatever the image's /proc is; a key that climbs or
/// names a global sysctl is refused before anything is written.
#[test]
fn attack_47_procfs_writes_reach_only_the_containers_namespaces() {
    let Some(root) = store() else { return };
    let canary = Canary::new().with_core_pattern();
    for key in [
        "kernel.core_pattern",
        "net.ipv4/../../kernel/core_pattern",
        "net/../kernel/core_pattern",
        "fs.mqueue.././../kernel.core_pattern",
        "kernel.shmmax/../core_pattern",
        "net..ipv4",
        "net.ipv4.conf.all.forwarding\n",
    ] {
        let kv = format!("{key}=|/kiln-pwned-sysctl");
        let ran = k(
            root.path(),
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "--sysctl",
                &kv,
                "box:1",
                "true",
            ],
        );
        refused(&ran, &["sysctl"]);
    }
    canary.assert_unchanged();
    // A namespaced one lands in the container's namespace, not the host's.
    let file = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
    let before = std::fs::read_to_string(file).unwrap();
    let value = if before.trim() == "1234" {
        "1235"
    } else {
        "1234"
    };
    let kv = format!("net.ipv4.ip_unprivileged_port_start={value}");
    let ran = sh(
        root.path(),
        &["--network", "none", "--sysctl", &kv],
        "box:1",
        &format!("cat {file}"),
    );
    assert_eq!(ran.stdout().trim(), value, "{}", ran.all());
    assert_eq!(std::fs::read_to_string(file).unwrap(), before);
    // An image whose /proc is a symlink gets no sysctl written either.
    let ran = import_bytes(
        root.path(),
        &busybox_with_symlink("proc", "p"),
        "evil:1",
        &[],
    );
    assert!(ran.ok(), "{}", ran.all());
    let ran = k(
        root.path(),
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--sysctl",
            &kv,
            "evil:1",
            "true",
        ],
    );
    refused(&ran, &["/proc"]);
    assert_eq!(std::fs::read_to_string(file).unwrap(), before);
    // exec's working directory is made through the container's own procfs:
    // the container cannot put anything over it.
    let name = format!("procfs-{}", word());
    let _c = Detached::start(root.path(), &name, &[], "sleep 1000");
    let ran = k(
        root.path(),
        &[
            "exec",
            &name,
            "sh",
            "-c",
            "mount -t tmpfs none /proc/self/fd || mount --bind /tmp /proc/self",
        ],
    );
    assert!(
        !ran.ok(),
        "the container mounted over its /proc: {}",
        ran.all()
    );
    let ran = k(root.path(), &["exec", "-w", "/made/by/exec", &name, "pwd"]);
    assert_eq!(ran.stdout(), "/made/by/exec\n", "{}", ran.all());
    canary.assert_unchanged();
}

// --- CVE-2026-41579: /dev as a symlink in the image --------------------------

/// CVE-2026-41579 (runc's /dev/ptmx and /dev symlinks made by path before
/// pivot_root), the class: an image whose /dev is a symlink to a host
/// directory is refused on every path that starts a container (run,
/// create + start, a build step, -t), and that directory is untouched (its
/// decoy `ptmx`, `fd`, `stdin` stay).
#[test]
fn attack_48_dev_symlink_to_a_host_directory_is_refused_everywhere() {
    let Some(root) = store() else { return };
    let mut canary = Canary::new();
    let decoy = evil_with_link_out(
        root.path(),
        &mut canary,
        "dev",
        &[
            ("ptmx", "decoy\n"),
            ("fd", "decoy\n"),
            ("stdin", "decoy\n"),
            ("null", "decoy\n"),
        ],
    );
    refused(&sh(root.path(), &[], "evil:1", "ls -l /dev/"), &["/dev"]);
    // Detached: refused, or at least never running.
    let name = format!("devsym-{}", word());
    let ran = k(
        root.path(),
        &["run", "-d", "--name", &name, "evil:1", "sleep", "100"],
    );
    if ran.ok() {
        assert!(
            !k(root.path(), &["exec", &name, "true"]).ok(),
            "it runs: {}",
            ran.all()
        );
    } else {
        refused(&ran, &["/dev"]);
    }
    let _ = k(root.path(), &["rm", "-f", &name]);
    let ctx = context("FROM evil:1\nRUN ls -l /dev/\n");
    refused(&build(root.path(), ctx.path(), &[]), &["/dev"]);
    if crate::util::need_tool("script", "util-linux script gives the test a terminal") {
        let ran = on_a_tty(root.path(), "run --rm -t evil:1 true");
        assert!(!ran.stdout().contains("host-exit=0"), "{}", ran.all());
    }
    assert_eq!(
        std::fs::read_to_string(decoy.path().join("ptmx")).unwrap(),
        "decoy\n"
    );
    canary.assert_unchanged();
    fsck(root.path());
}

/// Imports `evil:1`, busybox whose `/{replace}` is a symlink to a watched
/// host directory holding `files`; returns that directory.
fn evil_with_link_out(
    root: &Path,
    canary: &mut Canary,
    replace: &str,
    files: &[(&str, &str)],
) -> tempfile::TempDir {
    let decoy = watched_dir(canary, &format!("kiln-{replace}decoy-"), files);
    let target = decoy
        .path()
        .to_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    let ran = import_bytes(root, &busybox_with_symlink(replace, &target), "evil:1", &[]);
    assert!(ran.ok(), "{}", ran.all());
    decoy
}

// --- BuildKit CVE-2024-23651: cache mount source= race ----------------------

/// BuildKit's CVE-2024-23651, the class: two steps running at once share a
/// cache mount; one swaps a directory in it for symlinks out while the
/// other mounts that cache with `source=` the swapped path. The mount
/// shows the cache (or fails), never the host.
#[test]
fn attack_49_cache_mount_source_race_between_parallel_stages() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let w = word();
    let id = format!("race-src-{w}");
    let cp = canary.path_str();
    let climb = canary.climbing();
    let probe = |n: u32| {
        format!(
            "RUN --mount=type=cache,id={id},source=sub,target=/m,rw cat /m/secret /m/etc/shadow 2>&1 | head -c 400; touch /m/kiln-pwned-{n}; rm -rf /m/victim; true\n"
        )
    };
    let ctx = context(&format!(
        "FROM box:1 AS swap\n\
         RUN --mount=type=cache,id={id},target=/c touch /c/started; i=0; while [ ! -e /c/stop ] && [ $i -lt 3000 ]; do rm -rf /c/sub; ln -s {cp} /c/sub; rm -f /c/sub; ln -s {climb} /c/sub; rm -f /c/sub; ln -s / /c/sub; rm -f /c/sub; mkdir /c/sub; i=$((i+1)); done; echo swapped > /done\n\
         FROM box:1 AS use\n\
         RUN --mount=type=cache,id={id},target=/c i=0; while [ ! -e /c/started ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n\
         {}{}{}{}\
         RUN --mount=type=cache,id={id},target=/c touch /c/stop; echo used > /done\n\
         FROM box:1\nCOPY --from=swap /done /a\nCOPY --from=use /done /b\n",
        probe(1),
        probe(2),
        probe(3),
        probe(4)
    ));
    let ran = build_within(root.path(), ctx.path(), &[], LIMIT, "cache source race");
    assert!(
        !ran.all().contains(&canary.secret),
        "the cache mount read the host: {}",
        ran.all()
    );
    canary.assert_unchanged();
    fsck(root.path());
}

// --- BuildKit CVE-2024-23652: the mount stub cleaner ------------------------

/// BuildKit's CVE-2024-23652, the class: a step whose mount targets did not
/// exist (kiln makes their mount points, then removes them from the
/// step's diff) moves the stub's parent away and leaves a symlink out in
/// its place, for every mount type. The clean-up removes nothing outside
/// the step's own diff.
#[test]
fn attack_50_mount_stub_clean_up_does_not_follow_a_swapped_stub() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let cp = canary.path_str();
    let climb = canary.climbing();
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), "s\n").unwrap();
    let mut steps = String::from("FROM box:1\n");
    for (i, (mount, link)) in [
        ("type=tmpfs,target=/stub{i}/a/b", format!("{cp}/victim")),
        ("type=cache,target=/stub{i}/a/b", format!("{climb}/victim")),
        ("type=bind,target=/stub{i}/a/b", "/".to_string()),
        ("type=secret,id=s,target=/stub{i}/a/b", cp.clone()),
        ("type=tmpfs,target=/stub{i}/a", format!("{cp}/victim")),
    ]
    .into_iter()
    .enumerate()
    {
        let mount = mount.replace("{i}", &i.to_string());
        steps.push_str(&format!(
            "RUN --mount={mount} mv /stub{i} /moved{i} && ln -s {link} /stub{i}; ls -la /stub{i}/ >/dev/null; true\n"
        ));
    }
    let ctx = context(&steps);
    let secret = format!("id=s,src={}", secret_file.path().display());
    let ran = build(
        root.path(),
        ctx.path(),
        &["--no-cache", "--secret", &secret],
    );
    canary.assert_unchanged();
    assert!(canary.path().join("victim/keep").is_file());
    assert!(ran.ok(), "{}", ran.all());
    fsck(root.path());
}

// --- BuildKit CVE-2024-23653: one entitlement check for every path ----------

/// `kiln system service` on a socket of its own, killed when dropped.
struct ApiService {
    child: std::process::Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl ApiService {
    fn start(root: &Path) -> ApiService {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("kiln.sock");
        let child = kiln()
            .arg("--root")
            .arg(root)
            .args(["system", "service", "--timeout", "0", "--socket"])
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < until, "the service did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        ApiService {
            child,
            socket,
            _dir: dir,
        }
    }

    /// POSTs `tar` to `path`; the whole answer (HTTP/1.0: read to its end).
    fn post_tar(&self, path: &str, tar: &[u8]) -> String {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
            tar.len()
        )
        .unwrap();
        s.write_all(tar).unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        text(&raw)
    }
}

impl Drop for ApiService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// BuildKit's CVE-2024-23653, the class: `RUN --security=insecure` without
/// `--allow security.insecure` is refused before it runs, whichever way
/// the step arrives: the Dockerfile, a heredoc, a base image's ONBUILD, a
/// step cached by an earlier allowed build, and the Engine API's /build
/// (which has no way to grant it).
#[test]
fn attack_51_security_insecure_needs_the_entitlement_on_every_path() {
    let Some(root) = store() else { return };
    const DENIED: &str = "security.insecure is not allowed";
    let step = "RUN --security=insecure echo RAN-''INSECURE";
    let check = |ran: &Ran, what: &str| {
        assert!(
            !ran.all().contains("RAN-INSECURE"),
            "{what}: it ran: {}",
            ran.all()
        );
        refused(ran, &[DENIED]);
    };
    let plain = context(&format!("FROM box:1\n{step}\n"));
    check(&build(root.path(), plain.path(), &[]), "Dockerfile");
    let heredoc = context("FROM box:1\nRUN --security=insecure <<EOF\necho RAN-''INSECURE\nEOF\n");
    check(&build(root.path(), heredoc.path(), &[]), "heredoc");
    let base = std::fs::read(busybox_tar().unwrap()).unwrap();
    let ran = import_bytes(
        root.path(),
        &base,
        "onbuild:1",
        &[&format!("ONBUILD {step}")],
    );
    assert!(ran.ok(), "{}", ran.all());
    let child = context("FROM onbuild:1\n");
    check(&build(root.path(), child.path(), &[]), "ONBUILD");
    // Allowed once (and cached), then asked again without the entitlement.
    let ran = build(root.path(), plain.path(), &["--allow", "security.insecure"]);
    assert!(ran.ok(), "{}", ran.all());
    check(&build(root.path(), plain.path(), &[]), "cached step");
    // The Engine API.
    let api = ApiService::start(root.path());
    let tar = raw_tar(&[E::File(
        "Dockerfile",
        format!("FROM box:1\n{step}\n").as_bytes(),
    )]);
    let answer = api.post_tar("/v1.41/build?t=insecure:1&nocache=1", &tar);
    assert!(!answer.contains("RAN-INSECURE"), "{answer}");
    assert!(answer.contains(DENIED), "{answer}");
    assert!(!k(root.path(), &["inspect", "insecure:1"]).ok());
}

// --- FIFOs and device nodes where a regular file is expected ----------------

/// A FIFO or a device node where kiln expects a regular file (a COPY or ADD
/// source, a context's .dockerignore, `<Dockerfile>.dockerignore` through a
/// symlink out, a stage's /etc/passwd read for `--chown` or at a step's
/// start): nothing hangs, no host device is opened.
#[test]
fn attack_52_fifos_and_devices_where_files_are_expected() {
    let Some(root) = store() else { return };
    let mut canary = Canary::new();
    let limit = Duration::from_secs(30);
    let fifo =
        |p: &Path| nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    // COPY and ADD sources, alone and in a copied directory.
    let ctx =
        context("FROM box:1\nCOPY . /ctx/\nCOPY pipe /pipe\nADD pipe /pipe2\nCOPY dir /dir/\n");
    write(ctx.path(), &[("dir/keep", "k\n")]);
    fifo(&ctx.path().join("pipe"));
    fifo(&ctx.path().join("dir/pipe"));
    let _ = build_within(root.path(), ctx.path(), &[], limit, "FIFO as a COPY source");
    // The context's .dockerignore.
    let ctx = context("FROM box:1\nCOPY . /ctx/\n");
    fifo(&ctx.path().join(".dockerignore"));
    let ran = build_within(root.path(), ctx.path(), &[], limit, "FIFO .dockerignore");
    if !ran.ok() {
        refused(&ran, &[".dockerignore", "regular file"]);
    }
    // <Dockerfile>.dockerignore, a symlink to a host FIFO.
    let host = tempfile::Builder::new()
        .prefix("kiln-fifo-")
        .tempdir_in("/tmp")
        .unwrap();
    fifo(&host.path().join("pipe"));
    canary.watch(host.path(), 2, true);
    let ctx = context("FROM box:1\nCOPY . /ctx/\n");
    symlink(
        host.path().join("pipe"),
        ctx.path().join("Dockerfile.dockerignore"),
    )
    .unwrap();
    let _ = build_within(
        root.path(),
        ctx.path(),
        &[],
        limit,
        "Dockerfile.dockerignore -> host FIFO",
    );
    // A stage's /etc/passwd made a FIFO: a name looked up for --chown, and
    // the next step's start.
    for after in ["COPY --chown=app f.txt /y\n", "RUN true\n"] {
        let ctx = context(&format!(
            "FROM box:1\nRUN rm -f /etc/passwd && mkfifo /etc/passwd\n{after}"
        ));
        write(ctx.path(), &[("f.txt", "f\n")]);
        let _ = build_within(root.path(), ctx.path(), &[], limit, after.trim());
    }
    // A stage's /etc/passwd made a device node: a loop device over a host
    // file that names app 4242. Read on the host, --chown=app would give
    // 4242.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("passwd.img");
    let mut passwd = b"root:x:0:0:root:/root:/bin/sh\napp:x:4242:4242:app:/:/bin/sh\n".to_vec();
    passwd.resize(4096, b'\n');
    std::fs::write(&img, &passwd).unwrap();
    let losetup = Command::new("losetup")
        .args(["--find", "--show", "--read-only"])
        .arg(&img)
        .output();
    match losetup {
        Ok(out) if out.status.success() => {
            let dev = text(&out.stdout).trim().to_string();
            let rdev = std::fs::metadata(&dev).unwrap().rdev();
            let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
            let ctx = context(&format!(
                "FROM box:1\nRUN rm -f /etc/passwd && mknod /etc/passwd b {major} {minor}\nCOPY --chown=app f.txt /y\n"
            ));
            write(ctx.path(), &[("f.txt", "f\n")]);
            let ran = build_within(
                root.path(),
                ctx.path(),
                &["-t", "devpw:1"],
                limit,
                "device /etc/passwd",
            );
            let _ = Command::new("losetup").args(["-d", &dev]).status();
            if ran.ok() {
                let uid = sh(root.path(), &[], "devpw:1", "stat -c %u /y");
                assert_ne!(
                    uid.stdout().trim(),
                    "4242",
                    "the host device was read as /etc/passwd"
                );
            }
        }
        _ => eprintln!("no loop device: the device-node /etc/passwd case is skipped"),
    }
    canary.assert_unchanged();
    fsck(root.path());
}

/// A device node made on a mount kiln does not make nodev (a named
/// volume, an image's anonymous VOLUME, a `-v` or `--mount` host bind)
/// opens nothing: on cgroup v2 kiln loads no device filter, so nodev is
/// the only thing between CAP_MKNOD and the host's disks.
#[test]
fn attack_53_devices_made_on_volumes_and_binds_cannot_be_opened() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let w = word();
    let ran = import_bytes(
        root.path(),
        &std::fs::read(busybox_tar().unwrap()).unwrap(),
        "withvol:1",
        &["VOLUME /anon"],
    );
    assert!(ran.ok(), "{}", ran.all());
    let host = tempfile::tempdir().unwrap();
    let named = format!("devs-{w}:/named");
    let bind = format!("{}:/bound", host.path().display());
    let mount = format!("type=bind,src={},dst=/mounted", host.path().display());
    for (image, flags, at) in [
        ("box:1", vec!["-v", named.as_str()], "/named"),
        ("withvol:1", vec![], "/anon"),
        ("box:1", vec!["-v", bind.as_str()], "/bound"),
        ("box:1", vec!["--mount", mount.as_str()], "/mounted"),
    ] {
        for (kind, major, minor, dir) in [("b", 7, 0, "<"), ("c", 1, 11, ">")] {
            let node = format!("{at}/dev-{kind}");
            let ran = sh(
                root.path(),
                &flags,
                image,
                &format!(
                    "rm -f {node}; mknod {node} {kind} {major} {minor} || exit 0; if exec 3{dir}{node}; then echo OP''ENED; fi; rm -f {node}"
                ),
            );
            assert!(
                !ran.stdout().contains("OPENED"),
                "{kind} {major}:{minor} made at {at} opened: {}",
                ran.all()
            );
            assert!(
                ran.err().contains("operation not permitted")
                    || ran.err().contains("permission denied"),
                "{kind} {major}:{minor} at {at}: {}",
                ran.all()
            );
        }
    }
    canary.assert_unchanged();
    fsck(root.path());
}

// --- Buildah CVE-2024-1753: bind source through a symlink to / --------------

/// Buildah's CVE-2024-1753, the class: `RUN --mount=type=bind` whose source
/// goes through a context symlink to `/` (or climbs, or names an absolute
/// path): the mount shows the context (or is refused), read-only and
/// read-write, and nothing of the host is read or written.
#[test]
fn attack_54_bind_source_through_a_symlink_to_root_is_the_context() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let w = word();
    for src in [
        "l",
        "l/",
        "l/.",
        "sub/up",
        "sub/up/tmp",
        "l/etc",
        "/l/..",
        "../../../..",
        "c",
        "c/victim",
    ] {
        for rw in ["", ",rw"] {
            let ctx = context(&format!(
                "FROM box:1\nRUN --mount=type=bind,source={src},target=/m{rw} ls -a /m > /seen; cat /m/secret /m/shadow /m/etc/shadow >> /seen 2>&1; touch /m/kiln-pwned-{w}; rm -rf /m/victim; true\n"
            ));
            write(ctx.path(), &[("kiln-context-marker", "m\n")]);
            std::fs::create_dir(ctx.path().join("sub")).unwrap();
            symlink("/", ctx.path().join("l")).unwrap();
            symlink("../../../../../../../../..", ctx.path().join("sub/up")).unwrap();
            symlink(canary.path(), ctx.path().join("c")).unwrap();
            let out = tempfile::tempdir().unwrap();
            let dest = format!("type=local,dest={}", out.path().display());
            let ran = build(root.path(), ctx.path(), &["--no-cache", "-o", &dest]);
            assert!(
                !ran.all().contains(&canary.secret),
                "{src}{rw}: {}",
                ran.all()
            );
            if ran.ok() {
                let seen = std::fs::read_to_string(out.path().join("seen")).unwrap_or_default();
                assert!(
                    !seen.contains(&canary.secret),
                    "{src}{rw}: the host was read: {seen}"
                );
                let names: Vec<&str> = seen.lines().collect();
                assert!(
                    !names.contains(&"proc") && !names.contains(&"boot"),
                    "{src}{rw}: the host's / was mounted: {seen}"
                );
            } else {
                refused(&ran, &["not found"]);
            }
        }
    }
    canary.assert_unchanged();
    fsck(root.path());
}

// --- Buildah CVE-2024-9675: cache source outside the cache ------------------

/// Buildah's CVE-2024-9675, the class: a cache mount's `source=` (climbing,
/// absolute, or through a symlink an earlier step left in the cache) never
/// reaches outside the cache directory.
#[test]
fn attack_55_cache_mount_source_stays_in_the_cache() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    let w = word();
    let id = format!("src-{w}");
    let use_it = |source: &str| {
        format!(
            "RUN --mount=type=cache,id={id},source={source},target=/d cat /d/secret; touch /d/kiln-pwned; rm -rf /d/victim; ls /d; true\n"
        )
    };
    let ctx = context(&format!(
        "FROM box:1\n\
         RUN --mount=type=cache,id={id},target=/c ln -sfn {cp} /c/out && ln -sfn {climb} /c/up && ln -sfn / /c/root\n\
         {}{}{}{}{}",
        use_it(&canary.climbing()),
        use_it(&canary.path_str()),
        use_it("out"),
        use_it("up"),
        use_it("root/tmp"),
        cp = canary.path_str(),
        climb = canary.climbing(),
    ));
    let ran = build(root.path(), ctx.path(), &["--no-cache"]);
    assert!(!ran.timed_out);
    assert!(!ran.all().contains(&canary.secret), "{}", ran.all());
    canary.assert_unchanged();
    fsck(root.path());
}

// --- Buildah CVE-2024-9407: mount options taken as given --------------------

/// Buildah's CVE-2024-9407, the class: mount options reach no mount
/// unvalidated. `RUN --mount` refuses every key it does not document (such
/// as bind-propagation, also when it arrives through ARG expansion with a
/// comma or a newline in it); `kiln run`'s `-v`, `--tmpfs` and `--mount`
/// refuse unknown options and values, and a read-only request (`ro=true`,
/// `readonly=true`) is never a read-write mount.
#[test]
fn attack_56_mount_options_accept_only_documented_values() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    // RUN --mount, literal.
    for opt in [
        "bind-propagation=shared",
        "bind-propagation=rshared",
        "relabel=shared",
        "bind-nonrecursive=true",
        "z",
        "Z",
        "U",
        "suid",
        "dev",
        "exec",
    ] {
        let ctx = context(&format!(
            "FROM box:1\nRUN --mount=type=bind,target=/m,{opt} true\n"
        ));
        refused(
            &build(root.path(), ctx.path(), &[]),
            &["unexpected key", "invalid field"],
        );
    }
    // RUN --mount, through ARG expansion.
    for (dockerfile, arg) in [
        (
            "ARG P\nRUN --mount=type=bind,target=/m,bind-propagation=$P true\n",
            "P=rshared",
        ),
        (
            "ARG S\nRUN --mount=type=tmpfs,target=/t,size=$S true\n",
            "S=1m,mode=4777",
        ),
        (
            "ARG S\nRUN --mount=type=tmpfs,target=/t,size=$S true\n",
            "S=1m\nexec",
        ),
        (
            "ARG T\nRUN --mount=type=cache,target=/c,sharing=$T true\n",
            "T=shared,dev",
        ),
    ] {
        let ctx = context(&format!("FROM box:1\n{dockerfile}"));
        let ran = build(root.path(), ctx.path(), &["--build-arg", arg]);
        refused(
            &ran,
            &[
                "unexpected key",
                "invalid size",
                "invalid field",
                "unsupported sharing",
            ],
        );
    }
    // kiln run.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("keep"), "keep\n").unwrap();
    let h = host.path().display().to_string();
    for flags in [
        vec!["-v".to_string(), format!("{h}:/m:rshared")],
        vec!["-v".to_string(), format!("{h}:/m:ro,z")],
        vec!["-v".to_string(), format!("{h}:/m:Z")],
        vec!["--tmpfs".to_string(), "/t:mode=4777".to_string()],
        vec!["--tmpfs".to_string(), "/t:size=1m,exec".to_string()],
        vec![
            "--mount".to_string(),
            format!("type=bind,src={h},dst=/m,bind-propagation=bogus"),
        ],
        vec![
            "--mount".to_string(),
            format!("type=bind,src={h},dst=/m,bind-propagation=rshared\nro"),
        ],
        vec![
            "--mount".to_string(),
            format!("type=bind,src={h},dst=/m,no-such-key=1"),
        ],
        vec![
            "--mount".to_string(),
            "type=tmpfs,dst=/t,tmpfs-mode=4777,exec".to_string(),
        ],
    ] {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let ran = sh(root.path(), &flags, "box:1", "touch /m/kiln-pwned; true");
        refused(
            &ran,
            &["invalid", "unexpected", "unknown", "bind-propagation"],
        );
    }
    // A read-only request, spelled as docker allows: never read-write.
    for ro in [
        "ro",
        "ro=true",
        "readonly",
        "readonly=true",
        "readonly=1",
        "ro=1",
    ] {
        let m = format!("type=bind,src={h},dst=/m,{ro}");
        let ran = sh(
            root.path(),
            &["--mount", &m],
            "box:1",
            "touch /m/kiln-pwned-ro",
        );
        assert!(!ran.ok(), "{ro}: the bind was writable: {}", ran.all());
        assert!(
            !host.path().join("kiln-pwned-ro").exists(),
            "{ro}: written through a read-only bind"
        );
    }
    // A value docker refuses is refused, not read as read-write.
    let m = format!("type=bind,src={h},dst=/m,readonly=yes");
    let ran = sh(
        root.path(),
        &["--mount", &m],
        "box:1",
        "touch /m/kiln-pwned-yes",
    );
    assert!(
        !host.path().join("kiln-pwned-yes").exists(),
        "readonly=yes mounted read-write"
    );
    refused(&ran, &["readonly", "invalid"]);
    canary.assert_unchanged();
}

// ---------------------------------------------------------------------------
// Issue 25, also seen: --rm's anonymous volumes, long names, registry hosts,
// the open-file limit
// ---------------------------------------------------------------------------

/// `run --rm` (in the foreground and detached) removes the anonymous
/// volumes of the image's VOLUMEs, as docker does; a named one stays.
#[test]
fn attack_57_run_rm_removes_its_anonymous_volumes() {
    let Some(root) = store() else { return };
    let ctx = context("FROM box:1\nVOLUME /data\n");
    assert!(build(root.path(), ctx.path(), &["-t", "vol:1"]).ok());
    let volumes = |root: &Path| -> usize {
        std::fs::read_dir(root.join("volumes"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let ran = sh(root.path(), &[], "vol:1", "echo x > /data/x");
    assert!(ran.ok(), "{}", ran.all());
    assert_eq!(
        volumes(root.path()),
        0,
        "run --rm left its anonymous volume"
    );
    let ran = k(
        root.path(),
        &[
            "run",
            "-d",
            "--rm",
            "--name",
            "gone",
            "vol:1",
            "sh",
            "-c",
            "echo x > /data/x",
        ],
    );
    assert!(ran.ok(), "{}", ran.all());
    let deadline = Instant::now() + LIMIT;
    while volumes(root.path()) > 0 || k(root.path(), &["ps", "-a", "-q"]).stdout().trim() != "" {
        assert!(
            Instant::now() < deadline,
            "run -d --rm left its anonymous volume"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ran = sh(
        root.path(),
        &["-v", "kept:/data"],
        "vol:1",
        "echo x > /data/x",
    );
    assert!(ran.ok(), "{}", ran.all());
    let ls = k(root.path(), &["volume", "ls", "-q"]);
    assert_eq!(ls.stdout().trim(), "kept", "{}", ls.all());
}

/// A container name too long for a hostname runs (its hostname is then
/// its id's first digits, as docker's always is); a `--hostname` past the
/// kernel's 64 characters is refused before anything is made.
#[test]
fn attack_58_long_names_and_hostnames() {
    let Some(root) = store() else { return };
    let long = "a".repeat(300);
    let ran = k(
        root.path(),
        &["run", "--rm", "--name", &long, "box:1", "hostname"],
    );
    assert!(ran.ok(), "{}", ran.all());
    assert_eq!(ran.stdout().trim().len(), 12, "{}", ran.all());
    let ran = k(
        root.path(),
        &["run", "--rm", "--hostname", &long, "box:1", "hostname"],
    );
    refused(&ran, &["a hostname has at most 64 characters"]);
    let entries = std::fs::read_dir(root.path().join("containers"))
        .unwrap()
        .count();
    assert_eq!(entries, 0, "a refused container left its directory");
}

/// Path-shaped registry hosts (`..`, `.x`, `a..b`) are no hosts: refused
/// wherever a reference is read, before any request.
#[test]
fn attack_59_path_shaped_registry_hosts_are_refused() {
    let Some(root) = store() else { return };
    for bad in [
        "../x",
        "../../x:1",
        ".x/app",
        "a..b/app",
        "a./app",
        "a.-b/app",
    ] {
        for args in [
            vec!["tag", "box:1", bad],
            vec!["pull", bad],
            vec!["push", bad],
        ] {
            let ran = k(root.path(), &args);
            // push looks for the image first: no such image is no request.
            refused(&ran, &["invalid", "no such image"]);
            assert!(
                !ran.err().contains("connect") && !ran.err().contains("http"),
                "{args:?} got as far as a request: {}",
                ran.stderr()
            );
        }
    }
    let images = k(root.path(), &["images"]);
    assert_eq!(images.stdout().lines().count(), 2, "{}", images.all());
}

/// With a low soft open-file limit (`ulimit -n 256`, hard 8192), a few
/// hundred idle connections to a published port do not stop the next
/// one from being answered (kiln raises its soft limit to the hard one,
/// as docker does), and the container still gets the limit kiln was
/// started with.
#[test]
fn attack_60_idle_connections_do_not_stall_a_published_port() {
    let Some(root) = store() else { return };
    if !crate::util::need_tool("prlimit", "util-linux prlimit lowers the open-file limit") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "served\n").unwrap();
    std::fs::set_permissions(www.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bind = format!("{}:/www:ro", www.path().display());
    let publish = format!("127.0.0.1:{port}:8080");
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=256:8192", "--"])
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(root.path())
        .args([
            "run", "-d", "--name", "web", "-p", &publish, "-v", &bind, "box:1",
        ])
        .args([
            "sh",
            "-c",
            "ulimit -n > /www-limit; exec httpd -f -p 8080 -h /www",
        ]);
    let ran = bounded(&mut cmd, LIMIT);
    assert!(ran.ok(), "{}", ran.all());
    let get = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    };
    let deadline = Instant::now() + LIMIT;
    while !get().is_some_and(|b| b.contains("served")) {
        assert!(Instant::now() < deadline, "the server did not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Idle connections, each relayed (a client socket, a container socket
    // and their copies in kiln): well past 256 descriptors.
    let idle: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert_eq!(idle.len(), 300);
    let body = get();
    assert!(
        body.as_deref().is_some_and(|b| b.contains("served")),
        "a new connection was not answered with 300 idle ones open: {body:?}"
    );
    drop(idle);
    let limit = k(root.path(), &["exec", "web", "cat", "/www-limit"]);
    assert_eq!(limit.stdout().trim(), "256", "{}", limit.all());
    let _ = k(root.path(), &["rm", "-f", "web"]);
}

/// BuildKit's CVE-2026-33748, the class: a git source's subdirectory
/// (`#ref:../../etc`) must not lead out of the checkout. kiln has no git
/// sources yet: every such ADD is refused before anything is fetched or
/// read, saying so; `kiln serve`'s git targets name their Dockerfile
/// inside the checkout only.
#[test]
fn attack_61_git_subdirectories_never_leave_the_checkout() {
    let Some(root) = store() else { return };
    let canary = Canary::new();
    for url in [
        "https://example.invalid/r.git#main:../../etc",
        format!("https://example.invalid/r.git#main:{}", canary.climbing()).as_str(),
        "git@example.invalid:r.git#main:/etc",
    ] {
        let ctx = context(&format!("FROM box:1\nADD {url} /x\n"));
        let ran = build(root.path(), ctx.path(), &[]);
        refused(&ran, &["git sources are not supported"]);
        assert!(ran.stderr().contains("Dockerfile:2:1"), "{}", ran.stderr());
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiln-serve.toml");
    std::fs::write(
        &config,
        "[[target]]\nname = \"t\"\ngit = \"https://example.invalid/r.git\"\ndockerfile = \"../../etc/Dockerfile\"\n",
    )
    .unwrap();
    let ran = k(
        dir.path(),
        &["serve", "--config", config.to_str().unwrap(), "--check"],
    );
    refused(&ran, &["must be relative to the context, without .."]);
    canary.assert_unchanged();
    fsck(root.path());
}

/// The class of CVE-2026-41579 for /sys: kiln makes the cgroup links under
/// /sys/fs/cgroup by path, so an image whose /sys is a symlink to a host
/// directory holding `fs/cgroup/` would have them made there, on the host.
/// Refused before anything is mounted; the host directory is untouched.
#[test]
fn attack_62_sys_symlink_to_a_host_directory_is_refused() {
    let Some(root) = store() else { return };
    let mut canary = Canary::new();
    let decoy = evil_with_link_out(
        root.path(),
        &mut canary,
        "sys",
        &[("fs/cgroup/keep", "decoy\n"), ("kernel/keep", "decoy\n")],
    );
    refused(
        &sh(root.path(), &[], "evil:1", "ls /sys/fs/cgroup"),
        &["/sys"],
    );
    let ctx = context("FROM evil:1\nRUN ls /sys/fs/cgroup\n");
    refused(&build(root.path(), ctx.path(), &[]), &["/sys"]);
    let left: Vec<_> = std::fs::read_dir(decoy.path().join("fs/cgroup"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["keep"], "made on the host");
    canary.assert_unchanged();
    fsck(root.path());
}

/// Issue 25.1, the store's path: a root kiln never keeps its store where
/// another user can swap it. A store directory another user made (they
/// could put their own directory, or a symlink to one, in the place of
/// `snapshots` and run the set-uid files root unpacks there: uid=N
/// euid=0), one below a directory of theirs, one below a directory any
/// user can write, and a symlink leading to a directory of theirs are each
/// refused before anything is written in them; below a sticky directory
/// (as /tmp) a store of root's own works.
#[test]
fn attack_63_a_store_path_another_user_can_swap_is_refused() {
    if !need_root("the store path attack needs root and a user of its own") {
        return;
    }
    let Some(tar) = busybox_tar() else { return };
    let Some(user) = ThrowawayUser::new() else {
        return;
    };
    let tar = tar.to_str().unwrap();
    let outer = tempfile::tempdir().unwrap();
    std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let theirs = outer.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(user.uid), None).unwrap();
    let uid = format!("belongs to uid {}, not to uid 0", user.uid);
    let nested = theirs.join("store");
    let link = outer.path().join("link");
    std::os::unix::fs::symlink(&theirs, &link).unwrap();
    for store in [&theirs, &nested, &link] {
        let ran = k(store, &["import", tar, "box:1"]);
        refused(&ran, &[&uid]);
        assert!(
            ran.err().contains("become root through it"),
            "{}",
            ran.err()
        );
    }
    // Their symlink to a directory of root's: they could point it
    // elsewhere once the store is in use.
    let roots = outer.path().join("roots");
    std::fs::create_dir(&roots).unwrap();
    let their_link = outer.path().join("their-link");
    std::os::unix::fs::symlink(&roots, &their_link).unwrap();
    std::os::unix::fs::lchown(&their_link, Some(user.uid), None).unwrap();
    let ran = k(&their_link, &["import", tar, "box:1"]);
    refused(&ran, &[&format!("is a symlink uid {} owns", user.uid)]);
    assert!(std::fs::read_dir(&roots).unwrap().next().is_none());
    let left: Vec<_> = std::fs::read_dir(&theirs).unwrap().collect();
    assert!(left.is_empty(), "written in their directory: {left:?}");
    assert_eq!(mode_of(&theirs), 0o755, "their directory's mode changed");

    let open = outer.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ran = k(&open.join("store"), &["import", tar, "box:1"]);
    refused(&ran, &["is mode 777: any user of the host can rename"]);
    assert!(!open.join("store").exists());

    let sticky = outer.path().join("sticky");
    std::fs::create_dir(&sticky).unwrap();
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let ran = k(&sticky.join("store"), &["import", tar, "box:1"]);
    assert!(ran.ok(), "{}", ran.all());
    assert_eq!(mode_of(&sticky.join("store")), 0o700);
}

/// Issue 25, another user's traps on the paths a root kiln writes: a FIFO
/// planted where `save -o` and `build --output type=docker` write (it
/// would hand them the image, a root-only file in it included) is refused
/// without blocking; a symlink planted as `run --cidfile` is refused with
/// docker's words before a container is made, and what it points at is
/// untouched.
#[test]
fn attack_64_planted_fifos_and_cidfiles_are_refused() {
    let Some(root) = store() else { return };
    let Some(user) = ThrowawayUser::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let fifo = dir.path().join("img.tar");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    std::os::unix::fs::chown(&fifo, Some(user.uid), None).unwrap();
    let fifo_s = fifo.to_str().unwrap();
    let refusal =
        "not a regular file: kiln writes an image only to a file, a pipe of yours, /dev/stdout or /dev/null"
            .to_string();
    refused(
        &k(root.path(), &["save", "-o", fifo_s, "box:1"]),
        &[&refusal],
    );
    let ctx = context("FROM box:1\nRUN echo secret > /root/key && chmod 600 /root/key\n");
    let out = format!("type=docker,dest={fifo_s}");
    refused(
        &build(root.path(), ctx.path(), &["--output", &out]),
        &[&refusal],
    );

    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep\n").unwrap();
    let cid = dir.path().join("cid");
    std::os::unix::fs::symlink(&victim, &cid).unwrap();
    let ran = k(
        root.path(),
        &[
            "run",
            "--rm",
            "--cidfile",
            cid.to_str().unwrap(),
            "box:1",
            "true",
        ],
    );
    refused(
        &ran,
        &["container id file found, make sure the other container isn't running or delete"],
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
    let ps = k(root.path(), &["ps", "-a", "-q"]);
    assert_eq!(ps.stdout().trim(), "", "a container was made");
}

/// Issue 25, `build -o DIR` and `cp CTR:PATH DIR` where DIR is in a
/// directory another user writes: they swap DIR (or anything kiln makes
/// in it) for a symlink to a directory of root's while kiln writes. The
/// image is flattened in the store's private tmp and copied into DIR by
/// descriptor, DIR opened once and never through a symlink, so root's
/// directory is untouched however the swaps fall.
#[test]
fn attack_65_a_destination_swapped_mid_write_leads_nowhere() {
    let Some(root) = store() else { return };
    let mut canary = Canary::new();
    let victim = watched_dir(
        &mut canary,
        "kiln-swapdecoy-",
        &[("etc/passwd", "ORIGINAL\n")],
    );
    let play = tempfile::tempdir().unwrap();
    let (out, link) = (play.path().join("out"), play.path().join("link"));
    std::os::unix::fs::symlink(victim.path(), &link).unwrap();
    let ctx = context(
        "FROM box:1\nRUN echo 'pwned::0:0::/:/bin/sh' > /etc/passwd && mkdir -p /d && for i in $(seq 1 300); do echo $i > /d/f$i; done\n",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, out, link) = (stop.clone(), out.clone(), link.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Both exist once kiln made `out`: exchange them, again
                // and again, as the other user's loop would.
                if nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &out,
                    nix::fcntl::AT_FDCWD,
                    &link,
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .is_ok()
                {
                    swaps += 1;
                }
            }
            swaps
        })
    };
    for _ in 0..4 {
        let _ = build(root.path(), ctx.path(), &["-o", out.to_str().unwrap()]);
    }
    let running = k(
        root.path(),
        &[
            "run",
            "-d",
            "box:1",
            "sh",
            "-c",
            "echo 'pwned::0:0::/:/bin/sh' > /tmp/passwd; sleep 100",
        ],
    );
    assert!(running.ok(), "{}", running.all());
    let id = running.stdout().trim().to_string();
    let deadline = Instant::now() + LIMIT;
    while !k(root.path(), &["exec", &id, "cat", "/tmp/passwd"]).ok() {
        assert!(Instant::now() < deadline, "the container did not write");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0, "the swapper never swapped");
    // cp: the destination is the other user's real directory (a symlink
    // given as the destination is followed, as docker's cp and cp(1) do);
    // whatever kiln makes in it is swapped for a symlink to root's.
    let dest = play.path().join("cpdest");
    std::fs::create_dir(&dest).unwrap();
    let link2 = play.path().join("link2");
    std::os::unix::fs::symlink(victim.path().join("etc"), &link2).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, dest, link2) = (stop.clone(), dest.clone(), link2.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for e in std::fs::read_dir(&dest).into_iter().flatten().flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name != "passwd" {
                        let _ = nix::fcntl::renameat2(
                            nix::fcntl::AT_FDCWD,
                            &e.path(),
                            nix::fcntl::AT_FDCWD,
                            &link2,
                            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                        );
                        seen.push(name);
                    }
                }
            }
            seen
        })
    };
    for _ in 0..8 {
        let to = format!("{}/", dest.display());
        let ran = k(root.path(), &["cp", &format!("{id}:/tmp/passwd"), &to]);
        assert!(ran.ok(), "{}", ran.all());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert!(
        seen.is_empty(),
        "kiln made {seen:?} in the other user's directory"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("passwd")).unwrap(),
        "pwned::0:0::/:/bin/sh\n"
    );
    let _ = k(root.path(), &["rm", "-f", &id]);
    assert_eq!(
        std::fs::read_to_string(victim.path().join("etc/passwd")).unwrap(),
        "ORIGINAL\n"
    );
    canary.assert_unchanged();
}
