//! kiln on cgroup v2, which nearly every distribution boots with: Debian's
//! own kernel under qemu's software emulation, the unified hierarchy only
//! (`cgroup_no_v1=all`), booted from an initramfs `tests/vm/run.sh` makes
//! with this kiln; `tests/vm/cgroup2.sh` runs there and each section of
//! what it prints is compared here.

use crate::util::{busybox_tar, need_root, need_tool, repo, text};
use std::path::Path;
use std::process::Command;

/// The sections of the console's output: `=== NAME` and the lines up to
/// the next (the kernel's own messages, `[ 16.4] ...`, left out).
fn sections(console: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        // The firmware's screen codes may come before the first marker.
        if let Some(name) = line.find("=== ").map(|i| &line[i + 4..]) {
            out.push((name.to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut()
            && !line.trim_start().starts_with('[')
        {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

#[test]
fn cgroup_v2_limits_hold_and_show_inside_a_vm() {
    if !need_root("the VM's initramfs holds kiln run as root")
        || !need_tool(
            "qemu-system-x86_64",
            "qemu-system-x86 boots the cgroup v2 VM",
        )
        || !need_tool("cpio", "cpio packs the VM's initramfs")
        || !need_tool("objcopy", "binutils strips kiln for the initramfs")
    {
        return;
    }
    let has_kernel = std::fs::read_dir("/boot")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        })
        .unwrap_or(false);
    if !has_kernel {
        assert!(
            std::env::var_os("CI").is_none(),
            "no kernel in /boot in CI: .ci/run must install linux-image-amd64"
        );
        eprintln!("skipped: no kernel in /boot (linux-image-amd64)");
        return;
    }
    let Some(tar) = busybox_tar() else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let console = out.path().join("console");
    let ran = Command::new(repo().join("tests/vm/run.sh"))
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg(tar)
        .arg(repo().join("tests/vm/cgroup2.sh"))
        .arg(&console)
        .output()
        .expect("tests/vm/run.sh");
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(ran.status.success(), "{}\n{log}", text(&ran.stderr));
    // The VM's wall time, for people (TCG: tens of seconds).
    eprint!("{}", text(&ran.stderr));
    let got = sections(&log);
    let want: [(&str, &str); 14] = [
        ("run", "hello\n"),
        (
            "own cgroup, read-only",
            "67108864\n50000 100000\n30\nsh: can't create /sys/fs/cgroup/memory.max: Read-only file system\nrefused\n",
        ),
        ("cgroup namespace", "0::/\n0::/kiln/ID\n"),
        ("oom", "exit 137\n"),
        ("swap", "33554432\n"),
        ("pids", "10\nsh: can't fork\n"),
        (
            "detached, exec, update, stats, commit",
            "up\n0::/\n100663296\nweb 96.000MiB\nup\nthawed after: 0\n",
        ),
        ("groups reclaimed", "0\n"),
        ("device nodes", "refused\n"),
        (
            "device program",
            "sh: can't create /dev/kmsg: Operation not permitted\nwritten\nwritten\n3\n",
        ),
        // Each RUN in a group and cgroup namespace of its own, as
        // BuildKit's: / inside, no limit, no other group in sight.
        ("build", "built\n0::/\nmax\nalone\nsteps' groups left: 0\n"),
        ("read-only cgroups", "built\n"),
        // Rootless limits in a delegated subtree, refused outside one.
        (
            "rootless, delegated",
            "not delegated: exit 125\n0\n67108864\n20\n0::/\nexit 137\ngroups left: 0\n",
        ),
        ("done 0", ""),
    ];
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.first().is_some_and(|n| n.starts_with("kernel ")
            && n.ends_with("cgroup: cpuset cpu io memory hugetlb pids rdma misc")),
        "{log}"
    );
    for (name, body) in want {
        let found = got.iter().find(|(n, _)| n == name);
        assert_eq!(
            found.map(|(_, b)| b.as_str()),
            Some(body),
            "section {name:?} of the VM's output:\n{log}"
        );
    }
    assert!(Path::new(&console).exists());
}

#[test]
fn console_sections_skip_the_kernels_lines() {
    let s = sections(
        "noise\r\n=== a\r\none\r\n[   16.4] Memory cgroup out of memory\r\ntwo\r\n=== b\r\n",
    );
    assert_eq!(
        s,
        [
            ("a".to_string(), "one\ntwo\n".to_string()),
            ("b".to_string(), String::new())
        ]
    );
}
