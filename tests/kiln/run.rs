//! `kiln run` on a busybox image: isolation, exit codes and signals,
//! limits, mounts, the image config applied as docker run applies it, and
//! the escapes container runtimes have shipped.

use crate::util::{busybox_tar, kiln, need_root, text};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;

/// A store with `box:1` (busybox, CMD sh) and `cfg:1` (Entrypoint, Cmd,
/// Env, WorkingDir, User set), imported once for every run test.
fn store() -> Option<&'static Path> {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    ROOT.get_or_init(|| {
        if !need_root("containers need namespaces, mounts and cgroups") {
            return None;
        }
        let tar = busybox_tar()?;
        let root = tempfile::tempdir().expect("tempdir").keep();
        let import = |name: &str, changes: &[&str]| {
            let mut cmd = kiln();
            cmd.arg("--root")
                .arg(&root)
                .args(["import", tar.to_str().unwrap(), name]);
            for c in changes {
                cmd.args(["-c", c]);
            }
            let out = cmd.output().expect("kiln import");
            assert!(out.status.success(), "{}", text(&out.stderr));
        };
        import("box:1", &["CMD [\"sh\"]"]);
        import(
            "cfg:1",
            &[
                "ENTRYPOINT [\"/bin/echo\", \"entry\"]",
                "CMD [\"default-cmd\"]",
                "ENV GREETING=hi PATH=/bin:/usr/bin",
                "WORKDIR /home/app/work",
                "USER app",
            ],
        );
        Some(root)
    })
    .as_deref()
}

fn run(root: &Path, args: &[&str]) -> Output {
    kiln()
        .arg("--root")
        .arg(root)
        .arg("run")
        .arg("--rm")
        .args(args)
        .output()
        .expect("kiln run")
}

fn sh(root: &Path, flags: &[&str], script: &str) -> Output {
    let mut args: Vec<&str> = flags.to_vec();
    args.extend(["box:1", "sh", "-c", script]);
    run(root, &args)
}

#[test]
fn the_container_sees_only_itself() {
    let Some(root) = store() else { return };
    let out = sh(
        root,
        &["--hostname", "inner"],
        "hostname; ps -o pid,comm > /tmp/ps; tail -n +2 /tmp/ps | tr -s ' ' | tr '\\n' ,; echo; ls /proc/1/root 2>&1; cd /../../..; pwd; cat /etc/hostname",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "inner");
    // kiln's init (PID 1), sh (PID 2) and ps: nothing of the host.
    let procs: Vec<&str> = lines[1]
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(procs.len(), 3, "only the container's processes: {lines:?}");
    assert_eq!(procs[..2], ["1 kiln-init", "2 sh"]);
    assert!(procs[2].ends_with(" ps"), "{procs:?}");
    assert!(
        lines[2].contains("Permission denied"),
        "no way into init's root: {lines:?}"
    );
    assert_eq!(lines[3..], ["/", "inner"]);
}

#[test]
fn network_none_has_only_loopback() {
    let Some(root) = store() else { return };
    let out = sh(root, &["--network", "none"], "ls /sys/class/net");
    assert_eq!(text(&out.stdout), "lo\n", "{}", text(&out.stderr));
}

#[test]
fn exit_codes_are_docker_runs() {
    let Some(root) = store() else { return };
    assert_eq!(sh(root, &[], "exit 3").status.code(), Some(3));
    assert_eq!(sh(root, &[], "kill -9 $$").status.code(), Some(137));
    assert_eq!(sh(root, &[], "kill -TERM $$").status.code(), Some(143));
    let out = run(root, &["box:1", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        text(&out.stderr),
        "error: exec: \"no-such-command\": executable file not found in $PATH\n"
    );
    let out = run(root, &["box:1", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126));
    assert_eq!(
        text(&out.stderr),
        "error: exec: \"/etc/passwd\": permission denied\n"
    );
    // Not in the store, and no registry to pull it from: docker's 125.
    let out = run(root, &["nope:1"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr)
            .starts_with("error: image nope:1 is not in the store, and pulling it failed: "),
        "{}",
        text(&out.stderr)
    );
    let out = run(root, &["--pull", "never", "nope:1"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr),
        "error: image nope:1 is not in the store, and --pull=never: pull, import or load it first\n"
    );
}

#[test]
fn sigterm_reaches_the_process() {
    let Some(root) = store() else { return };
    let child = kiln()
        .arg("--root")
        .arg(root)
        .args([
            "run",
            "--rm",
            "box:1",
            "sh",
            "-c",
            "echo ready; exec sleep 30",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Signalled once the container runs (it says so), not after a guess.
    let mut child = child;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "ready\n");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(143));
}

#[test]
fn memory_and_pids_limits_hold() {
    let Some(root) = store() else { return };
    // Their ids, to look for their groups afterwards (other tests run
    // limited containers at the same time, under the same `kiln` group).
    let ids = tempfile::tempdir().unwrap();
    let (mem_cid, pids_cid) = (ids.path().join("mem"), ids.path().join("pids"));
    let out = sh(
        root,
        &["--memory", "32m", "--cidfile", mem_cid.to_str().unwrap()],
        "a=$(head -c 100000000 /dev/zero | tr '\\0' x); echo survived",
    );
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stdout));
    let out = sh(
        root,
        &[
            "--pids-limit",
            "20",
            "--cidfile",
            pids_cid.to_str().unwrap(),
        ],
        "for i in $(seq 60); do sleep 3 & done; echo spawned-all",
    );
    assert!(
        text(&out.stderr).contains("can't fork"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("spawned-all"));
    // Their cgroups are gone afterwards.
    // (The hierarchy mounted is looked at: v1's controllers or v2's one.)
    for cid in [&mem_cid, &pids_cid] {
        let id = std::fs::read_to_string(cid).unwrap();
        assert_eq!(id.trim().len(), 64, "{id}");
        for dir in crate::util::cgroup_dirs(&["memory", "pids"], &format!("kiln/{}", id.trim())) {
            assert!(!dir.exists(), "leftover cgroup {}", dir.display());
        }
    }
}

/// A container sees its own cgroups, read-only, where docker's do: its
/// memory limit in the file a JVM sizes its heap by, its device rules;
/// and nothing of the host's groups (v1: a hierarchy it has no group in
/// is not there).
#[test]
fn a_container_sees_its_own_cgroups_read_only() {
    let Some(root) = store() else { return };
    let v2 = crate::util::cgroup_v2();
    let script = match v2 {
        true => {
            "cat /sys/fs/cgroup/memory.max; ls /sys/fs/cgroup/kiln 2>&1 | head -1; echo 1 > /sys/fs/cgroup/memory.max"
        }
        false => {
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; grep -c '^c 7:128 rwm$' /sys/fs/cgroup/devices/devices.list; ls /sys/fs/cgroup/memory/kiln 2>&1 | head -1; echo 1 > /sys/fs/cgroup/memory/memory.limit_in_bytes"
        }
    };
    let out = sh(
        root,
        &["--memory", "64m", "--device-cgroup-rule", "c 7:128 rwm"],
        script,
    );
    let expected = match v2 {
        true => "67108864\nls: /sys/fs/cgroup/kiln: No such file or directory\n",
        false => "67108864\n1\nls: /sys/fs/cgroup/memory/kiln: No such file or directory\n",
    };
    assert_eq!(text(&out.stdout), expected, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Read-only file system"),
        "{}",
        text(&out.stderr)
    );
    // Without limits, no memory group of its own: none shown.
    let out = sh(root, &[], "ls /sys/fs/cgroup");
    assert!(
        !text(&out.stdout).contains("memory"),
        "{}",
        text(&out.stdout)
    );
    // A device rule alone makes the group it is a rule of (v1).
    if !v2 {
        let out = sh(
            root,
            &["--device-cgroup-rule", "c 7:128 rwm"],
            "grep -c '^c 7:128 rwm$' /sys/fs/cgroup/devices/devices.list",
        );
        assert_eq!(text(&out.stdout), "1\n", "{}", text(&out.stderr));
    }
    // A cgroup namespace of its own: the container's group is its `/`
    // (docker's default on v2, `--cgroupns private` on v1); with the
    // host's, the group's path below kiln's.
    let line = |flags: &[&str]| {
        let mut all = vec!["--memory", "64m"];
        all.extend(flags);
        let pattern = match v2 {
            true => "grep '^0::' /proc/self/cgroup",
            false => "grep -E '^[0-9]+:memory:' /proc/self/cgroup",
        };
        let out = sh(root, &all, pattern);
        text(&out.stdout).trim().to_string()
    };
    let (private, host) = (
        line(&["--cgroupns", "private"]),
        line(&["--cgroupns", "host"]),
    );
    assert!(private.ends_with(":/"), "{private}");
    assert!(host.contains(":/kiln/"), "{host}");
    assert_eq!(
        line(&[]).ends_with(":/"),
        v2,
        "the default: private on v2 only"
    );
}

#[test]
fn volumes_and_read_only_root() {
    let Some(root) = store() else { return };
    let host = tempfile::tempdir().expect("tempdir");
    let vol = format!("{}:/data", host.path().display());
    let out = sh(root, &["-v", &vol], "echo written > /data/f");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(host.path().join("f")).unwrap(),
        "written\n"
    );
    let ro = format!("{}:/data:ro", host.path().display());
    let out = sh(root, &["-v", &ro], "echo x > /data/g");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("Read-only file system"),
        "{}",
        text(&out.stderr)
    );
    let out = sh(root, &["--read-only"], "touch /x");
    assert!(
        text(&out.stderr).contains("Read-only file system"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn image_config_applies_as_in_docker_run() {
    let Some(root) = store() else { return };
    // Entrypoint + Cmd, as the user from the image, in its WorkingDir.
    let out = run(root, &["cfg:1"]);
    assert_eq!(
        text(&out.stdout),
        "entry default-cmd\n",
        "{}",
        text(&out.stderr)
    );
    // Arguments replace Cmd only.
    assert_eq!(text(&run(root, &["cfg:1", "a", "b"]).stdout), "entry a b\n");
    // --entrypoint replaces the entrypoint and drops the image's Cmd.
    let out = run(
        root,
        &[
            "--entrypoint",
            "sh",
            "cfg:1",
            "-c",
            "echo $GREETING $(id -u) $(pwd) $HOME",
        ],
    );
    assert_eq!(
        text(&out.stdout),
        "hi 1000 /home/app/work /home/app\n",
        "{}",
        text(&out.stderr)
    );
    // --entrypoint "" clears it; -e, -w and -u override.
    let out = run(
        root,
        &[
            "--entrypoint",
            "",
            "-e",
            "GREETING=yo",
            "-w",
            "/tmp",
            "-u",
            "0:0",
            "cfg:1",
            "sh",
            "-c",
            "echo $GREETING $(id -u):$(id -g) $(pwd)",
        ],
    );
    assert_eq!(text(&out.stdout), "yo 0:0 /tmp\n", "{}", text(&out.stderr));
    let out = run(root, &["-u", "ghost", "cfg:1"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr),
        "error: unable to find user ghost: no matching entries in passwd file\n"
    );
}

#[test]
fn stdin_passes_with_dash_i_only() {
    let Some(root) = store() else { return };
    let spawn = |flags: &[&str]| {
        use std::io::Write;
        let mut child = kiln()
            .arg("--root")
            .arg(root)
            .arg("run")
            .arg("--rm")
            .args(flags)
            .args(["box:1", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"from stdin\n")
            .unwrap();
        text(&child.wait_with_output().unwrap().stdout)
    };
    assert_eq!(spawn(&["-i"]), "from stdin\n");
    assert_eq!(spawn(&[]), "");
}

#[test]
fn rm_leaves_nothing_behind() {
    if store().is_none() {
        return;
    }
    // A store of its own: other tests run containers in the shared one.
    let own = tempfile::tempdir().expect("tempdir");
    let root = own.path();
    let tar = busybox_tar().expect("busybox");
    let out = kiln()
        .arg("--root")
        .arg(root)
        .args(["import", tar.to_str().unwrap(), "box:1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(sh(root, &[], "echo > /file-in-upper").status.success());
    let containers = root.join("containers");
    let left = std::fs::read_dir(&containers)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "--rm removes the container's directory");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&root.display().to_string()),
        "nothing of the store stays mounted"
    );
}

/// runc's CVE-2024-21626: no descriptor of kiln's reaches the process.
#[test]
fn regression_only_stdio_descriptors_reach_the_process() {
    let Some(root) = store() else { return };
    // Not the last command, so sh forks for ls and $$ stays the shell.
    let out = sh(root, &[], "ls /proc/$$/fd; exit 0");
    assert_eq!(text(&out.stdout), "0\n1\n2\n", "{}", text(&out.stderr));
}

/// runc's CVE-2019-5736: the container cannot overwrite the host's kiln
/// through /proc/1/exe.
#[test]
fn regression_proc_1_exe_is_not_the_host_binary() {
    let Some(root) = store() else { return };
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_kiln"));
    let before = std::fs::read(&exe).unwrap();
    let out = sh(root, &[], "cat /bin/busybox > /proc/1/exe; echo status=$?");
    assert_eq!(text(&out.stdout), "status=1\n", "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(&exe).unwrap(),
        before,
        "the host's kiln is unchanged"
    );
}

/// CVE-2019-5736 as it was done: hold the init's `/proc/PID/exe` (O_PATH)
/// while it runs, then write through it once it has ended and the file
/// is no longer busy. kiln's init runs from kiln's binary opened through
/// a read-only mount (or a sealed copy), so the write fails and the
/// host's kiln is unchanged.
#[test]
fn regression_the_inits_exe_cannot_be_written_once_it_ends() {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(root) = store() else { return };
    let host_kiln = PathBuf::from(env!("CARGO_BIN_EXE_kiln"));
    let before = std::fs::read(&host_kiln).unwrap();
    let k = |args: &[&str]| kiln().arg("--root").arg(root).args(args).output().unwrap();
    let out = k(&["run", "-d", "--name", "exe-guard", "box:1", "sleep", "30"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inspect: serde_json::Value =
        serde_json::from_slice(&k(&["inspect", "exe-guard"]).stdout).unwrap();
    let pid = inspect[0]["State"]["Pid"].as_u64().unwrap();
    assert!(pid > 0, "{inspect}");
    let held = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_PATH)
        .open(format!("/proc/{pid}/exe"))
        .unwrap();
    assert!(k(&["rm", "-f", "exe-guard"]).status.success());
    use std::os::fd::AsRawFd;
    let through = format!("/proc/self/fd/{}", held.as_raw_fd());
    let wrote = std::fs::OpenOptions::new()
        .append(true)
        .open(&through)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"pwned"));
    let e = wrote.expect_err("the init's binary took a write");
    assert!(
        [nix::libc::EROFS, nix::libc::EPERM].contains(&e.raw_os_error().unwrap_or(0)),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&host_kiln).unwrap(),
        before,
        "the host's kiln is unchanged"
    );
}

/// A symlink in the image must not redirect a bind mount onto the host:
/// targets are resolved inside the container's root.
#[test]
fn regression_bind_target_symlink_stays_inside() {
    let Some(root) = store() else { return };
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("marker"), "m").unwrap();
    // /evil -> /etc inside the image: the mount lands on the container's /etc.
    let vol = format!("{}:/evil/sub", host.path().display());
    let out = sh(
        root,
        &["-v", &vol],
        "ln -s /etc /evil2 2>/dev/null; cat /evil/sub/marker",
    );
    // /evil does not exist in busybox: it is created as a directory in the root.
    assert_eq!(text(&out.stdout), "m", "{}", text(&out.stderr));
    let tar_dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink("/etc", tar_dir.path().join("evil")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc", tar_dir.path().join("evil-rel")).unwrap();
    let layer = tar_dir.path().join("layer.tar");
    let status = std::process::Command::new("tar")
        .args([
            "-C",
            tar_dir.path().to_str().unwrap(),
            "-cf",
            layer.to_str().unwrap(),
            "evil",
            "evil-rel",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    // A second image: busybox plus the symlinks (import of the symlinks alone
    // would have no shell; the escape is checked from the host side).
    let out = kiln()
        .arg("--root")
        .arg(root)
        .args(["import", layer.to_str().unwrap(), "evil:1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for target in ["/evil/kiln-escape", "/evil-rel/kiln-escape"] {
        let vol = format!("{}:{target}", host.path().display());
        // The container got as far as its command (not found: exit 127),
        // so the bind was made, inside the image.
        let out = run(root, &["-v", &vol, "evil:1", "/marker-does-not-matter"]);
        assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
        assert!(
            !Path::new("/etc/kiln-escape").exists(),
            "bind through {target} landed on the host"
        );
    }
}

/// `-t`: a pty from the container's own devpts, sized like the caller's
/// terminal (`script` provides one, even in CI).
#[test]
fn tty_is_a_real_pty_with_the_callers_size() {
    let Some(root) = store() else { return };
    if !crate::util::need_tool("script", "util-linux script gives the test a terminal") {
        return;
    }
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let inner = format!(
        "stty rows 40 cols 100; {kiln} --root {} run --rm -t box:1 sh -c 'tty; stty size; exit 7'; echo host-exit=$?",
        root.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let text = text(&out.stdout).replace('\r', "");
    assert_eq!(text, "/dev/pts/0\n40 100\nhost-exit=7\n");
}
