//! The store and image formats with real clients: docker load/run/save,
//! skopeo and umoci read what kiln writes, kiln reads what they write, and
//! kill -9 at any moment leaves a store that passes fsck.

use crate::util::{busybox_tar, docker_cmd, docker_ready, kiln, need_tool, text};
use std::path::Path;
use std::process::Output;

fn k(root: &Path, args: &[&str]) -> Output {
    kiln()
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("kiln")
}

fn ok(root: &Path, args: &[&str]) -> String {
    let out = k(root, args);
    assert!(
        out.status.success(),
        "kiln {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn docker(args: &[&str]) -> Output {
    let out = docker_cmd().args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

#[test]
fn import_then_docker_load_and_run() {
    let Some(tar) = busybox_tar() else { return };
    if !docker_ready() {
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    let name = format!("kiln-test/docker-run:{}", std::process::id());
    let id = ok(
        root.path(),
        &[
            "import",
            tar.to_str().unwrap(),
            &name,
            "-c",
            "ENV GREETING=hello",
            "-c",
            "WORKDIR /home/app",
            "-c",
            "USER 1000:1000",
            "-c",
            "CMD [\"sh\", \"-c\", \"echo $GREETING from $(pwd) as $(id -u)\"]",
        ],
    );
    let archive = root.path().join("img.tar");
    ok(
        root.path(),
        &[
            "save",
            &name,
            "-o",
            archive.to_str().unwrap(),
            "--format",
            "docker",
        ],
    );
    let loaded = docker(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(text(&loaded.stdout), format!("Loaded image: {name}\n"));
    let run = docker(&["run", "--rm", "--network", "none", &name]);
    assert_eq!(text(&run.stdout), "hello from /home/app as 1000\n");
    let docker_id = docker(&["image", "inspect", "--format", "{{.Id}}", &name]);
    assert_eq!(
        text(&docker_id.stdout).trim(),
        id.trim(),
        "docker sees the same image id (config digest)"
    );
    let _ = docker_cmd().args(["rmi", &name]).output();
}

#[test]
fn skopeo_and_umoci_read_the_store_as_it_is() {
    let Some(tar) = busybox_tar() else { return };
    let root = tempfile::tempdir().expect("tempdir");
    let id = ok(
        root.path(),
        &[
            "import",
            tar.to_str().unwrap(),
            "box:1",
            "-c",
            "CMD [\"sh\"]",
        ],
    );
    if need_tool("skopeo", "skopeo reads OCI layouts") {
        let out = std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--config",
                &format!("oci:{}:box:1", root.path().display()),
            ])
            .output()
            .expect("skopeo");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let config: serde_json::Value = serde_json::from_slice(&out.stdout).expect("config JSON");
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
        assert_eq!(
            config["rootfs"]["diff_ids"].as_array().map(Vec::len),
            Some(1)
        );
    }
    if need_tool("umoci", "umoci unpacks OCI layouts") {
        let bundle = root.path().join("bundle");
        let out = std::process::Command::new("umoci")
            .args([
                "unpack",
                "--image",
                &format!("{}:box:1", root.path().display()),
                bundle.to_str().unwrap(),
            ])
            .output()
            .expect("umoci");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let busybox =
            std::fs::metadata(bundle.join("rootfs/bin/busybox")).expect("busybox unpacked");
        assert!(busybox.len() > 100_000);
        assert_eq!(
            std::fs::read_link(bundle.join("rootfs/bin/sh")).unwrap(),
            Path::new("busybox")
        );
        let tmp = std::fs::metadata(bundle.join("rootfs/tmp")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&tmp.permissions()) & 0o7777,
            0o1777
        );
    }
    assert!(ok(root.path(), &["inspect", "box:1"]).contains(id.trim()));
}

#[test]
fn docker_save_and_skopeo_archives_load_run_ready() {
    let Some(tar) = busybox_tar() else { return };
    let root = tempfile::tempdir().expect("tempdir");
    let id = ok(root.path(), &["import", tar.to_str().unwrap(), "box:1"]);
    let diff_id = {
        let v: serde_json::Value =
            serde_json::from_str(&ok(root.path(), &["inspect", "box:1"])).unwrap();
        v[0]["RootFS"]["Layers"][0]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string()
    };
    if docker_ready() {
        let name = format!("kiln-test/docker-save:{}", std::process::id());
        let archive = root.path().join("k.tar");
        ok(
            root.path(),
            &[
                "save",
                "box:1",
                "-o",
                archive.to_str().unwrap(),
                "--format",
                "docker",
            ],
        );
        docker(&["load", "-i", archive.to_str().unwrap()]);
        docker(&["tag", "box:1", &name]);
        let saved = root.path().join("from-docker.tar");
        docker(&["save", &name, "-o", saved.to_str().unwrap()]);
        let other = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            ok(other.path(), &["load", "-i", saved.to_str().unwrap()]),
            format!("Loaded image: {name}\n")
        );
        let images = ok(other.path(), &["images", "--format", "json"]);
        assert!(
            images.contains(id.trim()),
            "docker's save keeps the image id: {images}"
        );
        assert!(
            other
                .path()
                .join("snapshots")
                .join(&diff_id)
                .join("bin/busybox")
                .is_file(),
            "run-ready"
        );
        let _ = docker_cmd().args(["rmi", &name, "box:1"]).output();
    }
    if need_tool("skopeo", "skopeo writes OCI archives") {
        let archive = root.path().join("skopeo.tar");
        let out = std::process::Command::new("skopeo")
            .args([
                "copy",
                "-q",
                &format!("oci:{}:box:1", root.path().display()),
                &format!("oci-archive:{}:skopeo/box:2", archive.display()),
            ])
            .output()
            .expect("skopeo");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let other = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            ok(other.path(), &["load", "-i", archive.to_str().unwrap()]),
            "Loaded image: skopeo/box:2\n"
        );
        assert!(
            other
                .path()
                .join("snapshots")
                .join(&diff_id)
                .join("bin/busybox")
                .is_file(),
            "run-ready"
        );
        assert!(ok(other.path(), &["fsck"]).ends_with("; 0 problems\n"));
    }
}

#[test]
fn oci_save_round_trips_through_skopeo() {
    let Some(tar) = busybox_tar() else { return };
    if !need_tool("skopeo", "skopeo reads OCI archives") {
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    ok(root.path(), &["import", tar.to_str().unwrap(), "box:1"]);
    for compression in ["gzip", "zstd", "none"] {
        let archive = root.path().join(format!("{compression}.tar"));
        ok(
            root.path(),
            &[
                "save",
                "box:1",
                "-o",
                archive.to_str().unwrap(),
                "--compression",
                compression,
            ],
        );
        let out = std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                &format!("oci-archive:{}:box:1", archive.display()),
            ])
            .output()
            .expect("skopeo");
        assert!(out.status.success(), "{compression}: {}", text(&out.stderr));
        let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let media = manifest["layers"][0]["mediaType"]
            .as_str()
            .unwrap()
            .to_string();
        let want = match compression {
            "gzip" => "application/vnd.oci.image.layer.v1.tar+gzip",
            "zstd" => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar",
        };
        assert_eq!(media, want);
    }
}

#[test]
fn errors_are_clear() {
    let root = tempfile::tempdir().expect("tempdir");
    let out = k(root.path(), &["inspect", "nope:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: no such image: nope:1\n  help: `kiln images` lists the names and ids in this store\n"
    );
    let out = k(root.path(), &["tag", "x", "Bad Name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: invalid image name \"Bad Name\""),
        "{}",
        text(&out.stderr)
    );
    let junk = root.path().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar at all, not even close............................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................").unwrap();
    let out = k(root.path(), &["import", junk.to_str().unwrap(), "junk:1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("error: reading layer tar"),
        "{}",
        text(&out.stderr)
    );
    let out = k(root.path(), &["load", "-i", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        ok(root.path(), &["images"]).lines().count() == 1,
        "nothing was tagged"
    );
    assert!(ok(root.path(), &["fsck"]).ends_with("; 0 problems\n"));
    let foreign = tempfile::tempdir().expect("tempdir");
    std::fs::write(foreign.path().join("precious"), "x").unwrap();
    let out = k(foreign.path(), &["images"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not an OCI image layout"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn fsck_finds_a_corrupt_blob() {
    let Some(tar) = busybox_tar() else { return };
    let root = tempfile::tempdir().expect("tempdir");
    ok(root.path(), &["import", tar.to_str().unwrap(), "box:1"]);
    let blobs = root.path().join("blobs/sha256");
    let victim = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[5000] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let out = k(root.path(), &["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    let name = victim.file_name().unwrap().to_string_lossy();
    assert!(
        report.starts_with(&format!(
            "error: corrupt blob sha256:{name}: content hashes to sha256:"
        )),
        "{report}"
    );
}

/// kill -9 at random moments of import and save; every time, the store
/// opens, passes fsck, and still holds the image tagged before.
#[test]
fn kill_9_at_any_moment_leaves_a_valid_store() {
    let Some(tar) = busybox_tar() else { return };
    let root = tempfile::tempdir().expect("tempdir");
    ok(root.path(), &["import", tar.to_str().unwrap(), "base:1"]);
    // A bigger input widens the window: 24 MiB of incompressible data.
    let big_dir = tempfile::tempdir().expect("tempdir");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..24 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(big_dir.path().join("random.bin"), &data).unwrap();
    let big = root.path().join("big.tar");
    let status = std::process::Command::new("tar")
        .args([
            "-C",
            big_dir.path().to_str().unwrap(),
            "-cf",
            big.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let out_file = root.path().join("out.tar");
    let mut interrupted = 0;
    for round in 0..12u64 {
        let args: Vec<String> = if round % 2 == 0 {
            vec![
                "import".into(),
                big.display().to_string(),
                format!("big:{round}"),
            ]
        } else {
            vec![
                "save".into(),
                "base:1".into(),
                "-o".into(),
                out_file.display().to_string(),
                "--compression".into(),
                "gzip".into(),
            ]
        };
        let mut child = kiln()
            .arg("--root")
            .arg(root.path())
            .args(&args)
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(20 + round * 37 % 300));
        if child.try_wait().expect("try_wait").is_none() {
            interrupted += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        let fsck = k(root.path(), &["fsck"]);
        assert_eq!(
            fsck.status.code(),
            Some(0),
            "round {round} ({args:?}): {}",
            text(&fsck.stdout)
        );
        assert!(
            ok(root.path(), &["images"]).contains("base "),
            "round {round}: base:1 survives"
        );
        assert_eq!(
            std::fs::read_dir(root.path().join("tmp")).unwrap().count(),
            0,
            "round {round}: tmp cleaned at start"
        );
        // The archive is written aside and renamed: if it exists, it is whole.
        if out_file.exists() {
            let check = tempfile::tempdir().expect("tempdir");
            assert_eq!(
                ok(check.path(), &["load", "-i", out_file.to_str().unwrap()]),
                "Loaded image: base:1\n"
            );
        }
    }
    assert!(
        interrupted >= 3,
        "only {interrupted} of 12 rounds were killed mid-write: the test proved little"
    );
}

/// Two kilns on one store at once: both imports and both saves succeed.
#[test]
fn concurrent_kilns_on_one_store_both_succeed() {
    let Some(tar) = busybox_tar() else { return };
    let root = tempfile::tempdir().expect("tempdir");
    ok(root.path(), &["import", tar.to_str().unwrap(), "base:1"]);
    let spawn = |args: Vec<String>| {
        kiln()
            .arg("--root")
            .arg(root.path())
            .args(args)
            .output()
            .expect("kiln")
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let args: Vec<String> = if i % 2 == 0 {
                    vec![
                        "import".into(),
                        tar.display().to_string(),
                        format!("copy:{i}"),
                        "-c".into(),
                        format!("ENV N={i}"),
                    ]
                } else {
                    let out = root.path().join(format!("save{i}.tar"));
                    vec![
                        "save".into(),
                        "base:1".into(),
                        "-o".into(),
                        out.display().to_string(),
                    ]
                };
                s.spawn(move || spawn(args))
            })
            .collect();
        for h in handles {
            let out = h.join().expect("thread");
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
    });
    let images = ok(root.path(), &["images"]);
    for name in ["base ", "copy "] {
        assert!(images.contains(name), "{images}");
    }
    assert_eq!(
        images.lines().count(),
        4,
        "header, base:1, copy:0, copy:2: {images}"
    );
    assert!(ok(root.path(), &["fsck"]).ends_with("; 0 problems\n"));
    // With other kilns gone, prune may run; with one holding the store, it must not.
    let mut holder = kiln()
        .arg("--root")
        .arg(root.path())
        .args(["load"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Until the holder has the store open (its shared lock on tmp.lock),
    // an exclusive lock of it is ours to take.
    let guard = std::fs::File::open(root.path().join("tmp.lock")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while guard.try_lock().is_ok() {
        guard.unlock().unwrap();
        assert!(
            std::time::Instant::now() < deadline,
            "the holder never opened the store"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(guard);
    let busy = k(root.path(), &["prune"]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(
        text(&busy.stderr).contains("is in use by another kiln process"),
        "{}",
        text(&busy.stderr)
    );
    drop(holder.stdin.take());
    let _ = holder.wait_with_output();
    assert!(ok(root.path(), &["prune"]).starts_with("Deleted "));
}

/// Regression: `kiln save -o /dev/null` renamed its temporary file over the
/// device node, leaving the machine with a regular file at /dev/null. A
/// FIFO stands in for the device here: it must still be a FIFO afterwards,
/// and its reader must get the whole archive.
#[test]
fn regression_save_into_a_fifo_writes_through_it() {
    use std::os::unix::fs::FileTypeExt;
    if !need_tool("mkfifo", "it makes the FIFO saved into") {
        return;
    }
    let Some(tar) = busybox_tar() else { return };
    let root = tempfile::tempdir().unwrap();
    k(root.path(), &["import", tar.to_str().unwrap(), "box:1"]);
    let fifo = root.path().join("out.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let out = kiln()
        .arg("--root")
        .arg(root.path())
        .args(["save", "box:1", "--compression", "none", "-o"])
        .arg(&fifo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Checked before joining: had kiln renamed over the FIFO, the reader
    // would wait forever.
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let bytes = reader.join().unwrap();
    assert!(
        bytes.len() > 1 << 20,
        "the archive came through: {}",
        bytes.len()
    );
}
