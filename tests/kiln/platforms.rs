//! Another platform's image built and run here (issue 29): an arm64
//! busybox (Debian's busybox-static:arm64, which .ci/run downloads into
//! target/arm64) imported as `linux/arm64`, a Dockerfile whose first stage
//! runs natively (`FROM --platform=$BUILDPLATFORM`) and whose second runs
//! through binfmt_misc's qemu-aarch64 handler.

use crate::util::{busybox_tar, docker_cmd, docker_ready, kiln, need_root, repo, text};
use std::path::PathBuf;
use std::process::Command;

/// The arm64 busybox root filesystem, made from the downloaded package;
/// None (the test skips, saying why) without it or without the handler.
fn arm64_busybox_tar(dir: &std::path::Path) -> Option<PathBuf> {
    let debs = repo().join("target/arm64");
    let deb = std::fs::read_dir(&debs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_arm64.deb"));
    let handler = std::path::Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists();
    let (Some(deb), true) = (deb, handler) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs busybox-static:arm64 in target/arm64 and the qemu-aarch64 handler: .ci/run downloads and registers them"
        );
        eprintln!(
            "skipped: needs {}/busybox-static_*_arm64.deb (apt-get download busybox-static:arm64, after dpkg --add-architecture arm64) and qemu-user-static's qemu-aarch64 handler",
            debs.display()
        );
        return None;
    };
    let extracted = dir.join("deb");
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&extracted)
        .output()
        .expect("dpkg-deb");
    assert!(out.status.success(), "dpkg-deb: {}", text(&out.stderr));
    let tar = dir.join("busybox-arm64.tar");
    let out = Command::new(repo().join("fixtures/images/busybox-rootfs.sh"))
        .arg(&tar)
        .env("BUSYBOX", extracted.join("bin/busybox"))
        .output()
        .expect("busybox-rootfs.sh");
    assert!(
        out.status.success(),
        "busybox-rootfs.sh: {}",
        text(&out.stderr)
    );
    Some(tar)
}

#[test]
fn an_arm64_image_is_built_here_with_a_native_cross_stage_and_runs() {
    if !need_root("build steps run as root") {
        return;
    }
    let Some(host_tar) = busybox_tar() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(arm_tar) = arm64_busybox_tar(dir.path()) else {
        return;
    };
    let store = dir.path().join("store");
    let k = |args: &[&str]| {
        let out = kiln()
            .arg("--root")
            .arg(&store)
            .args(args)
            .output()
            .expect("kiln");
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let ok = |args: &[&str]| {
        let (code, out, err) = k(args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        out
    };
    ok(&["import", host_tar.to_str().unwrap(), "box:host"]);
    ok(&[
        "import",
        "--platform",
        "linux/aarch64",
        arm_tar.to_str().unwrap(),
        "box:arm64",
    ]);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM --platform=$BUILDPLATFORM box:host AS cross\n\
         ARG TARGETPLATFORM TARGETARCH TARGETVARIANT BUILDPLATFORM\n\
         RUN echo \"$BUILDPLATFORM ($(uname -m)) for $TARGETPLATFORM: $TARGETARCH [$TARGETVARIANT]\" > /out\n\
         FROM box:arm64\n\
         COPY --from=cross /out /out\n\
         RUN uname -m >> /out\n\
         CMD [\"cat\", \"/out\"]\n",
    )
    .unwrap();
    let ctx = ctx.to_str().unwrap();
    ok(&[
        "build",
        "-q",
        "--platform",
        "linux/arm64",
        "-t",
        "multi:arm64",
        ctx,
    ]);
    let host = kiln::plan::host_platform();
    let uname = text(&Command::new("uname").arg("-m").output().unwrap().stdout);
    assert_eq!(
        ok(&["run", "--rm", "multi:arm64"]),
        format!(
            "{host} ({}) for linux/arm64: arm64 []\naarch64\n",
            uname.trim()
        )
    );
    let inspected: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "multi:arm64"])).unwrap();
    assert_eq!(inspected[0]["Architecture"], "arm64", "{inspected}");
    assert_eq!(
        ok(&[
            "run",
            "--rm",
            "--platform",
            "linux/arm64",
            "box:arm64",
            "uname",
            "-m"
        ]),
        "aarch64\n"
    );
    // The platform asked for must be the image's.
    let (code, _, err) = k(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        "box:host",
        "true",
    ]);
    assert_eq!(code, Some(125));
    assert_eq!(
        err,
        format!(
            "error: image box:host is for {host}, not linux/arm64 (--platform): pull or build that platform's\n"
        )
    );
    // A base of this machine's is not taken for an arm64 stage.
    std::fs::write(
        dir.path().join("ctx/Dockerfile.wrong"),
        "FROM box:host\nRUN true\n",
    )
    .unwrap();
    let (code, _, err) = k(&[
        "build",
        "--platform",
        "linux/arm64",
        "-f",
        &format!("{ctx}/Dockerfile.wrong"),
        ctx,
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "base box:host in the store is for {host}, and this stage builds for linux/arm64"
        )),
        "{err}"
    );
    // One platform per build, for now, said plainly.
    let (code, _, err) = k(&["build", "--platform", "linux/amd64,linux/arm64", ctx]);
    assert_eq!(code, Some(2));
    assert!(err.contains("kiln builds one platform per build"), "{err}");
    // docker 20.10's load takes the one-platform archive, and its run
    // goes through the same handler.
    if docker_ready() {
        let archive = dir.path().join("arm64.tar");
        ok(&[
            "save",
            "--format",
            "docker",
            "-o",
            archive.to_str().unwrap(),
            "multi:arm64",
        ]);
        let loaded = docker_cmd()
            .arg("load")
            .arg("-i")
            .arg(&archive)
            .output()
            .unwrap();
        assert!(loaded.status.success(), "{}", text(&loaded.stderr));
        let ran = docker_cmd()
            .args(["run", "--rm", "--network", "none", "multi:arm64"])
            .output()
            .unwrap();
        let _ = docker_cmd().args(["rmi", "multi:arm64"]).output();
        assert_eq!(
            text(&ran.stdout),
            format!(
                "{host} ({}) for linux/arm64: arm64 []\naarch64\n",
                uname.trim()
            ),
            "{}",
            text(&ran.stderr)
        );
    }
}
