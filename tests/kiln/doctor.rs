//! `kiln doctor` on this host, on a store whose filesystem is nearly
//! full, and inside a docker container with docker's default capabilities
//! and seccomp profile, where kiln cannot isolate anything: each finding
//! as it must read.

use crate::util::{busybox_tar, docker_cmd, kiln, need_root, need_tool, text};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn doctor(store: &Path) -> (Output, Value) {
    let out = kiln()
        .arg("--root")
        .arg(store)
        .args(["doctor", "--format", "json"])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

fn finding<'a>(v: &'a Value, check: &str) -> &'a Value {
    v.as_array()
        .and_then(|a| a.iter().find(|f| f["check"] == check))
        .unwrap_or_else(|| panic!("no {check:?} finding in {v}"))
}

#[test]
fn doctor_says_what_this_host_allows() {
    if !need_root("the checks as root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, v) = doctor(&dir.path().join("store"));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let iso = finding(&v, "isolation");
    assert_eq!(iso["status"], "ok", "{iso}");
    assert_eq!(
        iso["detail"],
        "an overlay mounts in a new mount namespace: RUN steps and containers run isolated"
    );
    assert_eq!(
        finding(&v, "user namespaces")["detail"],
        "not needed as root"
    );
    let cg = finding(&v, "cgroups");
    assert_eq!(cg["status"], "ok", "{cg}");
    let version = match crate::util::cgroup_v2() {
        true => "v2 (unified), writable: limits hold",
        false => "v1, writable: limits hold",
    };
    assert_eq!(cg["detail"], version);
    let store = finding(&v, "store");
    assert!(
        store["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/store on ", dir.path().display())),
        "{store}"
    );
    // The store was not made by looking at it.
    assert!(!dir.path().join("store").exists());
    // Nothing of the probe is left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // The plain form: one line per finding, fixes beneath.
    let plain = kiln()
        .arg("--root")
        .arg(dir.path())
        .arg("doctor")
        .output()
        .unwrap();
    assert!(
        text(&plain.stdout).starts_with("ok   isolation: an overlay mounts"),
        "{}",
        text(&plain.stdout)
    );
}

#[test]
fn a_store_on_a_nearly_full_filesystem_fails_with_the_fix() {
    if !need_root("mounting a small tmpfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success());
    let (out, v) = doctor(&mnt.join("store"));
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let store = finding(&v, "store");
    assert_eq!(store["status"], "fail");
    assert_eq!(
        store["detail"],
        format!(
            "{}/store on tmpfs, 0.0 GiB free: less than 1 GiB, too little for a base image and its layers",
            mnt.display()
        )
    );
    assert_eq!(
        store["fix"],
        "free space (kiln prune) or use --root on a larger filesystem"
    );
}

/// Inside `docker run` with docker's defaults (no --privileged), as a CI
/// job's container runs: kiln says it cannot isolate and why, and `kiln
/// run` fails saying so.
#[test]
fn inside_an_unprivileged_container_kiln_says_why_it_cannot_run() {
    if !need_root("docker needs root")
        || !need_tool("docker", "docker runs the unprivileged container")
    {
        return;
    }
    let Some(tar) = busybox_tar() else {
        return;
    };
    let store = tempfile::tempdir().unwrap();
    let k = |args: &[&str]| {
        let out = kiln()
            .arg("--root")
            .arg(store.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    k(&["import", tar.to_str().unwrap(), "kiln-doctor-base:1"]);
    let archive = store.path().join("base.tar");
    k(&[
        "save",
        "--format",
        "docker",
        "-o",
        archive.to_str().unwrap(),
        "kiln-doctor-base:1",
    ]);
    let load = docker_cmd()
        .args(["load", "-i"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(load.status.success(), "{}", text(&load.stderr));
    // kiln and the C library it links, read-only, as a CI job mounts a
    // tool; the test base inside, to import.
    let bin = env!("CARGO_BIN_EXE_kiln");
    let inside = |script: &str| {
        docker_cmd()
            .args(["run", "--rm", "--network", "none"])
            .args(["-v", &format!("{bin}:/usr/local/bin/kiln:ro")])
            .args(["-v", "/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:ro"])
            .args(["-v", "/lib64:/lib64:ro"])
            .args(["-v", &format!("{}:/base.tar:ro", tar.display())])
            .args(["kiln-doctor-base:1", "sh", "-c", script])
            .output()
            .unwrap()
    };
    let out = inside("kiln --root /tmp/store doctor --format json");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let iso = finding(&v, "isolation");
    assert_eq!(iso["status"], "fail");
    let detail = iso["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(
            "mounting an overlay in a new mount namespace failed: Operation not permitted"
        ) && detail.ends_with(
            "kiln runs without CAP_SYS_ADMIN, as in a container with docker's default capabilities."
        ),
        "{detail}"
    );
    assert!(
        iso["fix"]
            .as_str()
            .unwrap()
            .starts_with("inside a container, run it with --privileged")
    );
    assert_eq!(finding(&v, "seccomp")["status"], "warn");
    let ran = inside(
        "kiln --root /tmp/store import /base.tar b:1 >/dev/null && kiln --root /tmp/store run --rm b:1 true",
    );
    let _ = docker_cmd().args(["rmi", "kiln-doctor-base:1"]).output();
    assert_eq!(ran.status.code(), Some(125), "{}", text(&ran.stderr));
    assert!(
        text(&ran.stderr).contains("namespaces cannot be made here")
            && text(&ran.stderr).contains("kiln doctor"),
        "{}",
        text(&ran.stderr)
    );
}
