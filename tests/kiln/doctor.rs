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

/// Inside `docker run` with docker's defaults (no --privileged, docker's
/// seccomp profile, `--network none`, kiln mounted read-only), as a CI
/// job's container runs: doctor says kiln falls back to chroot; a store on
/// the container's own overlayfs is refused with the fix; with the store on
/// a volume, a multi-stage build (RUN, COPY --from, a deletion, owners,
/// a cache mount)
/// gives the image id the same build gives on the host with
/// SOURCE_DATE_EPOCH, and `kiln run` runs it as its USER; the fallback is
/// said once; as a non-root user inside, chroot is refused with the reason.
#[test]
fn inside_an_unprivileged_container_kiln_builds_and_runs_with_chroot() {
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
            .arg(store.path().join("s"))
            .args(args)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    let tar_path = tar.to_str().unwrap();
    k(&["import", tar_path, "kiln-doctor-base:1"]);
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
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        concat!(
            "FROM kiln-doctor-base:1 AS build\n",
            "RUN mkdir -p /src && echo 'int main' > /src/app && chmod 755 /src/app",
            " && echo 'ksvc:x:1234:1234::/:/bin/sh' >> /etc/passwd && chown ksvc /src/app\n",
            "FROM kiln-doctor-base:1\n",
            "COPY --from=build /src/app /usr/local/bin/app\n",
            "COPY --from=build /etc/passwd /etc/passwd\n",
            "RUN rm /bin/vi && mkdir -p /data && chown 1234:1234 /data && echo built > /data/note\n",
            "RUN --mount=type=cache,target=/var/cache/k echo once >> /var/cache/k/log",
            " && wc -l < /var/cache/k/log > /data/uses\n",
            "USER ksvc\n",
            "CMD [\"sh\", \"-c\", \"id -u; stat -c '%u %a' /usr/local/bin/app /data;",
            " cat /data/note /data/uses; ls /var/cache/k /bin/vi || echo no-vi\"]\n",
        ),
    )
    .unwrap();
    let ctx_path = ctx.path().to_str().unwrap();
    // The same build on the host, in a namespaced container each step.
    k(&["import", tar_path, "base:1"]);
    let host_id = k(&["build", "-q", "-t", "app:1", ctx_path]);

    // kiln and the C library it links, read-only, as a CI job mounts a
    // tool; the base tar and the context at the host's paths.
    let bin = env!("CARGO_BIN_EXE_kiln");
    let volume = format!("kiln-doctor-{}", std::process::id());
    let inside = |extra: &[&str], script: &str| {
        docker_cmd()
            .args(["run", "--rm", "--network", "none"])
            .args(["-v", &format!("{bin}:/usr/local/bin/kiln:ro")])
            .args(["-v", "/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:ro"])
            .args(["-v", "/lib64:/lib64:ro"])
            .args(["-v", &format!("{tar_path}:{tar_path}:ro")])
            .args(["-v", &format!("{ctx_path}:{ctx_path}:ro")])
            .args(["-e", "SOURCE_DATE_EPOCH=1700000000"])
            .args(extra)
            .args(["kiln-doctor-base:1", "sh", "-c", script])
            .output()
            .unwrap()
    };
    let out = inside(&[], "kiln --root /tmp/store doctor --format json");
    // The store on the container's own overlayfs fails; isolation warns.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let iso = finding(&v, "isolation");
    assert_eq!(iso["status"], "warn", "{iso}");
    let detail = iso["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(
            "mounting an overlay in a new mount namespace failed: Operation not permitted"
        ) && detail.contains(
            "kiln runs without CAP_SYS_ADMIN, as in a container with docker's default capabilities. kiln isolates with chroot instead (--isolation=chroot)"
        ),
        "{detail}"
    );
    assert_eq!(finding(&v, "store")["status"], "fail");
    assert_eq!(finding(&v, "seccomp")["status"], "warn");
    let ran = inside(
        &[],
        &format!(
            "kiln --root /tmp/store import {tar_path} b:1 >/dev/null && kiln --root /tmp/store run --rm b:1 true"
        ),
    );
    assert_eq!(ran.status.code(), Some(125), "{}", text(&ran.stderr));
    assert!(
        text(&ran.stderr).contains("is on overlayfs, this container's own root, which refuses the whiteouts layers hold: put the store on a volume"),
        "{}",
        text(&ran.stderr)
    );

    // The store on a volume, as the README's CI job has it.
    let mount = format!("{volume}:/var/lib/kiln");
    let built = inside(
        &["-v", &mount],
        &format!(
            "kiln import {tar_path} kiln-doctor-base:1 >/dev/null && kiln import {tar_path} base:1 >/dev/null && kiln build -q -t app:1 {ctx_path} && kiln run --rm app:1"
        ),
    );
    let _ = docker_cmd().args(["volume", "rm", "-f", &volume]).output();
    let stderr = text(&built.stderr);
    assert!(built.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("isolating with chroot instead").count(),
        2,
        "the fallback is said once by each kiln that runs a container (build, run): {stderr}"
    );
    let stdout = text(&built.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(host_id.as_str()),
        "the same image as the host's build"
    );
    assert_eq!(
        lines.collect::<Vec<_>>(),
        ["1234", "1234 755", "1234 755", "built", "1", "no-vi"],
        "{stdout}{stderr}"
    );

    // Not root inside: chroot cannot work, and kiln says why.
    let ran = inside(
        &["--user", "1000:1000"],
        &format!(
            "kiln --root /tmp/s2 import {tar_path} kiln-doctor-base:1 >/dev/null && kiln --root /tmp/s2 build --isolation chroot {ctx_path}"
        ),
    );
    let _ = docker_cmd().args(["rmi", "kiln-doctor-base:1"]).output();
    assert!(!ran.status.success());
    assert!(
        text(&ran.stderr).contains("--isolation=chroot needs root"),
        "{}",
        text(&ran.stderr)
    );
}
