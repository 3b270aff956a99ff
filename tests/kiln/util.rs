//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `kiln` command with colour off.
pub fn kiln() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.env("NO_COLOR", "1").stdin(Stdio::null());
    cmd
}

/// Runs `kiln args...` in `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    kiln()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running kiln")
}

/// Runs `kiln args...` with `input` on standard input.
pub fn run_with_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = kiln()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kiln");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("writing stdin");
    child.wait_with_output().expect("waiting for kiln")
}

/// Text of an output stream.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// True when golden files should be rewritten. Never in CI: a run that
/// rewrites what it compares with passes whatever the code does.
pub fn blessing() -> bool {
    let bless = std::env::var_os("KILN_BLESS").is_some();
    assert!(
        !(bless && std::env::var_os("CI").is_some()),
        "KILN_BLESS rewrites the goldens and cannot fail: it is refused when CI is set"
    );
    bless
}

/// Case directories under `dir`, sorted by name; at least `min` of them
/// (a loop over no case asserts nothing).
pub fn cases_at_least(dir: &Path, min: usize) -> Vec<PathBuf> {
    let all = cases(dir);
    assert!(
        all.len() >= min,
        "{}: at least {min} cases, found {}",
        dir.display(),
        all.len()
    );
    all
}

/// Case directories under `dir`, sorted by name.
pub fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// The shared conformance data, or None (with a note) when it is absent.
/// In CI (`CI` set) its absence is a failure: CI always has it.
pub fn conformance(sub: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("KILN_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/conformance"))
        .join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "conformance data missing at {} (CI must have ../shared)",
        dir.display()
    );
    eprintln!(
        "skipped: conformance data not found at {} (set KILN_CONFORMANCE)",
        dir.display()
    );
    None
}

/// Compares `actual` with the golden file `path`, or rewrites it when blessing.
/// Returns a description of the mismatch, if any.
pub fn golden(path: &Path, actual: &str) -> Option<String> {
    if blessing() {
        std::fs::write(path, actual).expect("writing golden file");
        return None;
    }
    let want =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    (want != actual).then(|| format!("{}:\n--- want\n{want}--- got\n{actual}", path.display()))
}

/// True when `tool` is on PATH. When it is not, says why the test skips;
/// in CI (`CI` set), where every tool is installed, its absence fails.
pub fn need_tool(tool: &str, why: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} missing in CI ({why}): .ci/run must install it"
        );
        eprintln!("skipped: {tool} is not installed ({why})");
    }
    found
}

/// A busybox root filesystem tarball, made once per test run by
/// fixtures/images/busybox-rootfs.sh (None when busybox-static is missing).
pub fn busybox_tar() -> Option<&'static Path> {
    static TAR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    TAR.get_or_init(|| make_busybox("kiln")).as_deref()
}

/// The same busybox with Docker Hub busybox's /etc/passwd and /etc/group
/// (daemon, bin, nobody...), which BuildKit's own tests assume.
pub fn busybox_docker_tar() -> Option<&'static Path> {
    static TAR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    TAR.get_or_init(|| make_busybox("docker")).as_deref()
}

fn make_busybox(flavour: &str) -> Option<PathBuf> {
    if !need_tool("busybox", "busybox-static makes the test base image") {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let tar = dir.join("busybox.tar");
    let status = Command::new(repo().join("fixtures/images/busybox-rootfs.sh"))
        .arg(&tar)
        .arg(flavour)
        .status()
        .expect("running busybox-rootfs.sh");
    assert!(status.success(), "busybox-rootfs.sh failed");
    Some(tar)
}

/// True when running as root; otherwise says why the test skips (CI is root).
pub fn need_root(why: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root ({why})");
        eprintln!("skipped: needs root ({why})");
    }
    root
}

/// A `docker` command. Debian's client (/usr/bin/docker, docker.io 20.10)
/// is preferred: it carries BuildKit itself, where a newer client on PATH
/// may need a buildx plugin that is not installed.
pub fn docker_cmd() -> Command {
    let debian = Path::new("/usr/bin/docker");
    Command::new(if debian.is_file() {
        debian
    } else {
        Path::new("docker")
    })
}

/// True when a Docker engine answers; otherwise says why the test skips
/// (in CI, where .ci/run starts dockerd, its absence fails).
pub fn docker_ready() -> bool {
    need_tool(
        "docker",
        "docker.io runs and builds the images kiln is compared with",
    ) && docker_cmd()
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
        || {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must have a running dockerd (.ci/run starts it)"
            );
            eprintln!(
                "skipped: dockerd is not running (start: dockerd --bridge=none --iptables=false &)"
            );
            false
        }
}

/// Taken for reading by tests that watch `/etc` for changes (the attacks'
/// canaries) and for writing while a test adds or removes a user:
/// useradd and userdel rewrite /etc/passwd, /etc/group, /etc/shadow and
/// their backups, which a canary would report as an attack's doing.
pub static ETC_USERS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Holds [`ETC_USERS`] for writing (a poisoned lock is still a lock).
pub fn changing_users() -> std::sync::RwLockWriteGuard<'static, ()> {
    ETC_USERS.write().unwrap_or_else(|e| e.into_inner())
}

/// True on cgroup v2 (the unified hierarchy at /sys/fs/cgroup); false on
/// v1; panics when neither is mounted, so a cgroup check never passes by
/// finding nothing to look at.
pub fn cgroup_v2() -> bool {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return true;
    }
    assert!(
        root.join("memory").is_dir() || root.join("pids").is_dir(),
        "no cgroup hierarchy is mounted at /sys/fs/cgroup (neither v2 nor v1's controllers)"
    );
    false
}

/// The directories where kiln's groups named `rel` live for `controllers`:
/// the one unified directory on v2, each controller's on v1.
pub fn cgroup_dirs(controllers: &[&str], rel: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    match cgroup_v2() {
        true => vec![root.join(rel)],
        false => controllers.iter().map(|c| root.join(c).join(rel)).collect(),
    }
}
