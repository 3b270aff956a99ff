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
    // A list of platforms that is not one is said plainly.
    let (code, _, err) = k(&["build", "--platform", "linux/amd64,linux/", ctx]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--platform: "), "{err}");
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

/// Validates `statement` against the committed SLSA v1 schema with
/// python3's jsonschema (Debian's python3-jsonschema).
fn valid_slsa(statement: &serde_json::Value) {
    let schema = repo().join("tests/fixtures/slsa-provenance-v1.schema.json");
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1]))\n\
             jsonschema.validators.validator_for(schema)(schema).validate(json.load(sys.stdin))\n",
        ])
        .arg(&schema)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(statement.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the provenance does not validate against {}: {}",
        schema.display(),
        text(&out.stderr)
    );
}

#[test]
fn a_two_platform_image_is_one_index_with_provenance_and_sbom_pushed_saved_and_run() {
    if !need_root("build steps run as root")
        || !crate::util::need_tool("python3", "it validates the provenance")
    {
        return;
    }
    let host = kiln::plan::host_platform();
    if host != "linux/amd64" {
        eprintln!("skipped: written for an amd64 machine building arm64 through qemu");
        return;
    }
    let Some(host_tar) = busybox_tar() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(arm_tar) = arm64_busybox_tar(dir.path()) else {
        return;
    };
    let Some(reg) = crate::registry::Registry::start(false) else {
        return;
    };
    let store = dir.path().join("store");
    let k = |store: &std::path::Path, args: &[&str]| {
        let out = kiln()
            .arg("--root")
            .arg(store)
            .args(args)
            .output()
            .expect("kiln");
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let ok = |store: &std::path::Path, args: &[&str]| {
        let (code, out, err) = k(store, args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        out
    };
    ok(&store, &["import", host_tar.to_str().unwrap(), "box-amd64"]);
    ok(
        &store,
        &[
            "import",
            "--platform",
            "linux/arm64",
            arm_tar.to_str().unwrap(),
            "box-arm64",
        ],
    );
    // One name for both: an index made of the two images.
    ok(
        &store,
        &["manifest", "create", "box", "box-amd64", "box-arm64"],
    );
    let made: serde_json::Value =
        serde_json::from_str(&ok(&store, &["manifest", "inspect", "box"])).unwrap();
    assert_eq!(
        made["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["platform"]["architecture"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["amd64", "arm64"]
    );
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    // The cross stage runs here once per target (its TARGETARCH differs);
    // the final stage's base is each platform's image of `box`.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM --platform=$BUILDPLATFORM box-amd64 AS cross\n\
         ARG TARGETPLATFORM TARGETARCH BUILDPLATFORM\n\
         RUN echo \"$BUILDPLATFORM ($(uname -m)) for $TARGETPLATFORM: $TARGETARCH\" > /out\n\
         FROM box\n\
         COPY --from=cross /out /out\n\
         RUN uname -m >> /out\n\
         CMD [\"cat\", \"/out\"]\n",
    )
    .unwrap();
    let name = format!("{}/kiln/multi:1", reg.host());
    let ctx_s = ctx.to_str().unwrap();
    ok(
        &store,
        &[
            "build",
            "-q",
            "--platform",
            "linux/amd64,linux/arm64",
            "--sbom=true",
            "--source-date-epoch",
            "0",
            "--verify-repro",
            "--build-arg",
            "FLAVOUR=plain",
            "-t",
            &name,
            ctx_s,
        ],
    );
    // A $BUILDPLATFORM stage that reads no target arg is one step for
    // both platforms: built side by side, it runs once, the other
    // platform's build waiting for it and finding it cached.
    std::fs::write(
        ctx.join("Dockerfile.shared"),
        "FROM --platform=$BUILDPLATFORM box-amd64 AS tools\n\
         RUN echo tool > /tool\n\
         FROM box-${TARGETARCH}\n\
         COPY --from=tools /tool /tool\n",
    )
    .unwrap();
    let (code, _, progress) = k(
        &store,
        &[
            "build",
            "--progress",
            "plain",
            "--platform",
            "linux/amd64,linux/arm64",
            "-f",
            ctx.join("Dockerfile.shared").to_str().unwrap(),
            ctx_s,
        ],
    );
    assert_eq!(code, Some(0), "{progress}");
    let ids: Vec<&str> = progress
        .lines()
        .filter(|l| l.ends_with("tools 2/2] RUN echo tool > /tool"))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert_eq!(
        ids.len(),
        2,
        "one per platform, each named by it: {progress}"
    );
    assert!(progress.contains("[linux/arm64 tools 2/2]"), "{progress}");
    let cached = ids
        .iter()
        .filter(|id| progress.lines().any(|l| l == format!("{id} CACHED")))
        .count();
    assert_eq!(cached, 1, "{progress}");
    // -o type=local of two platforms: a directory each, as BuildKit
    // writes them, each with its platform's programs.
    let out_dir = dir.path().join("out");
    ok(
        &store,
        &[
            "build",
            "-q",
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            &format!("type=local,dest={}", out_dir.display()),
            "-f",
            ctx.join("Dockerfile.shared").to_str().unwrap(),
            ctx_s,
        ],
    );
    // ELF e_machine: 62 x86-64, 183 aarch64.
    let machine = |p: &str| {
        let elf = std::fs::read(out_dir.join(p).join("bin/busybox")).unwrap();
        u16::from_le_bytes([elf[18], elf[19]])
    };
    assert_eq!((machine("linux_amd64"), machine("linux_arm64")), (62, 183));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("linux_arm64/tool")).unwrap(),
        "tool\n"
    );
    let amd = "linux/amd64 (x86_64) for linux/amd64: amd64\nx86_64\n";
    let arm = "linux/amd64 (x86_64) for linux/arm64: arm64\naarch64\n";
    assert_eq!(ok(&store, &["run", "--rm", &name]), amd);
    assert_eq!(
        ok(&store, &["run", "--rm", "--platform", "linux/arm64", &name]),
        arm
    );
    let listed = ok(&store, &["images"]);
    let row = listed
        .lines()
        .find(|l| l.contains("kiln/multi"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(row.ends_with("linux/amd64,linux/arm64"), "{listed}");
    let inspected: serde_json::Value =
        serde_json::from_str(&ok(&store, &["inspect", &name])).unwrap();
    assert_eq!(
        inspected[0]["Index"]["Platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );

    // The registry holds one index: both images and an attestation
    // manifest about each.
    ok(&store, &["push", &name]);
    let raw = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", text(&raw.stderr));
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    let platform_of = |e: &serde_json::Value| {
        format!(
            "{}/{}",
            e["platform"]["os"].as_str().unwrap(),
            e["platform"]["architecture"].as_str().unwrap()
        )
    };
    let images: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["annotations"]["vnd.docker.reference.type"].is_null())
        .collect();
    assert_eq!(
        images.iter().map(|e| platform_of(e)).collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"],
        "{index}"
    );
    let about: Vec<&str> = entries
        .iter()
        .filter(|e| e["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
        .map(|e| {
            e["annotations"]["vnd.docker.reference.digest"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        about,
        images
            .iter()
            .map(|e| e["digest"].as_str().unwrap())
            .collect::<Vec<_>>(),
        "{index}"
    );

    // And each attestation is an OCI referrer of its image: docker-registry
    // 2.8 has no referrers API, so the fallback tag `sha256-<hex>` names
    // an index of them, each a manifest whose subject is the image.
    let skopeo_raw = |reference: String| -> serde_json::Value {
        let out = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{reference}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let repo_ref = name.rsplit_once(':').unwrap().0.to_string();
    for image in &images {
        let digest = image["digest"].as_str().unwrap();
        let referrers = skopeo_raw(format!(
            "{repo_ref}:sha256-{}",
            digest.trim_start_matches("sha256:")
        ));
        let listed = referrers["manifests"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{referrers}");
        assert_eq!(
            listed[0]["artifactType"],
            "application/vnd.docker.attestation.manifest.v1+json"
        );
        let referrer = skopeo_raw(format!(
            "{repo_ref}@{}",
            listed[0]["digest"].as_str().unwrap()
        ));
        assert_eq!(referrer["subject"]["digest"], digest, "{referrer}");
    }

    // The arm64 image's provenance: valid SLSA v1, about that manifest,
    // its materials the two bases, the build arg recorded.
    let provenance: serde_json::Value = serde_json::from_str(&ok(
        &store,
        &[
            "inspect",
            "--provenance",
            "--platform",
            "linux/arm64",
            &name,
        ],
    ))
    .unwrap();
    let p = &provenance[0];
    valid_slsa(p);
    assert_eq!(
        p["subject"][0]["digest"]["sha256"]
            .as_str()
            .map(|h| format!("sha256:{h}")),
        images[1]["digest"].as_str().map(str::to_string)
    );
    let def = &p["predicate"]["buildDefinition"];
    assert_eq!(
        def["externalParameters"]["request"]["args"]["build-arg:FLAVOUR"],
        "plain"
    );
    assert_eq!(def["internalParameters"]["platform"], "linux/arm64");
    assert_eq!(
        def["externalParameters"]["request"]["args"]["build-arg:SOURCE_DATE_EPOCH"],
        "0"
    );
    // --verify-repro checked this machine's image: its provenance says so.
    assert!(def["internalParameters"]["verifyRepro"].is_null(), "{p}");
    let amd_provenance: serde_json::Value =
        serde_json::from_str(&ok(&store, &["inspect", "--provenance", &name])).unwrap();
    let verdict =
        &amd_provenance[0]["predicate"]["buildDefinition"]["internalParameters"]["verifyRepro"];
    assert_eq!(verdict["result"], "reproducible", "{amd_provenance}");
    assert_eq!(verdict["platform"], "linux/amd64");
    valid_slsa(&amd_provenance[0]);
    let materials: Vec<&str> = def["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["uri"].as_str().unwrap())
        .collect();
    assert_eq!(
        materials,
        [
            "pkg:docker/box-amd64@latest?platform=linux%2Famd64",
            "pkg:docker/box@latest?platform=linux%2Farm64"
        ]
    );
    // The base's digest is its index's, as its name gave it.
    let box_index: serde_json::Value =
        serde_json::from_str(&ok(&store, &["inspect", "box"])).unwrap();
    assert_eq!(
        def["resolvedDependencies"][1]["digest"]["sha256"]
            .as_str()
            .map(|h| format!("sha256:{h}")),
        box_index[0]["Index"]["Digest"].as_str().map(str::to_string)
    );
    let sbom: serde_json::Value =
        serde_json::from_str(&ok(&store, &["inspect", "--sbom", &name])).unwrap();
    assert_eq!(sbom[0]["predicate"]["spdxVersion"], "SPDX-2.3");
    assert_eq!(
        sbom[0]["predicate"]["packages"],
        serde_json::json!([]),
        "busybox has no package database"
    );

    // An index made here of images stored uncompressed: each leaves as a
    // gzip manifest, sent under its own digest, the index naming those.
    let box_ref = format!("{}/kiln/box:1", reg.host());
    ok(&store, &["tag", "box", &box_ref]);
    ok(&store, &["push", &box_ref]);
    let raw = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{box_ref}"))
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", text(&raw.stderr));
    let pushed: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    for child in pushed["manifests"].as_array().unwrap() {
        let digest = child["digest"].as_str().unwrap();
        let one = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{}/kiln/box@{digest}", reg.host()))
            .output()
            .unwrap();
        assert!(one.status.success(), "{digest}: {}", text(&one.stderr));
        let m: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
        assert_eq!(
            m["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
            "{m}"
        );
    }

    // A multi-platform base from the registry: each platform's build
    // pulls its own image, and the name ends as a local index of both.
    let fresh = dir.path().join("fresh");
    std::fs::write(
        ctx.join("Dockerfile.pulled"),
        format!("FROM {box_ref}\nRUN uname -m > /arch\n"),
    )
    .unwrap();
    ok(
        &fresh,
        &[
            "build",
            "-q",
            "--insecure-registry",
            &reg.host(),
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "pulled:1",
            "-f",
            ctx.join("Dockerfile.pulled").to_str().unwrap(),
            ctx_s,
        ],
    );
    assert_eq!(
        ok(
            &fresh,
            &[
                "run",
                "--rm",
                "--platform",
                "linux/arm64",
                "pulled:1",
                "cat",
                "/arch"
            ]
        ),
        "aarch64\n"
    );
    assert_eq!(
        ok(&fresh, &["run", "--rm", "pulled:1", "cat", "/arch"]),
        "x86_64\n"
    );
    let listed = ok(&fresh, &["images"]);
    let row = listed
        .lines()
        .find(|l| l.starts_with(&format!("{}/kiln/box", reg.host())))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(row.ends_with("linux/amd64,linux/arm64"), "{listed}");

    // An index without a name, whose arm64 image a container was made
    // from, stays through `kiln prune` (its dangling images forgotten).
    let id = ok(
        &store,
        &[
            "build",
            "-q",
            "--platform",
            "linux/amd64,linux/arm64",
            "-f",
            ctx.join("Dockerfile.shared").to_str().unwrap(),
            "--build-arg",
            "UNNAMED=1",
            ctx_s,
        ],
    );
    let id = id.trim();
    let ran = ok(
        &store,
        &[
            "run",
            "--platform",
            "linux/arm64",
            "--name",
            "keeper",
            id,
            "cat",
            "/tool",
        ],
    );
    assert_eq!(ran, "tool\n");
    ok(&store, &["prune"]);
    let committed = ok(&store, &["commit", "keeper", "kept:1"]);
    assert!(committed.starts_with("sha256:"), "{committed}");
    assert_eq!(
        ok(&store, &["run", "--rm", "kept:1", "uname", "-m"]),
        "aarch64\n"
    );
    ok(&store, &["rm", "keeper"]);

    // Pulled whole into another store: the same index, run as arm64.
    let other = dir.path().join("other");
    ok(
        &other,
        &[
            "pull",
            "-q",
            "--all-platforms",
            "--insecure-registry",
            &reg.host(),
            &name,
        ],
    );
    assert_eq!(
        ok(&other, &["run", "--rm", "--platform", "linux/arm64", &name]),
        arm
    );
    assert!(ok(&other, &["images"]).contains("linux/amd64,linux/arm64"));

    // Prune keeps every platform's image and the attestations.
    ok(&store, &["rmi", "box", "box-amd64", "box-arm64"]);
    ok(&store, &["prune"]);
    assert!(ok(&store, &["fsck"]).ends_with("; 0 problems\n"));
    assert_eq!(
        ok(&store, &["run", "--rm", "--platform", "linux/arm64", &name]),
        arm
    );
    let provenance_after = ok(
        &store,
        &[
            "inspect",
            "--provenance",
            "--platform",
            "linux/arm64",
            &name,
        ],
    );
    assert!(provenance_after.contains("https://slsa.dev/provenance/v1"));

    // An OCI archive holds the whole index; --platform one image, which
    // docker 20.10's load takes.
    let all = dir.path().join("all.tar");
    ok(&store, &["save", "-o", all.to_str().unwrap(), &name]);
    let third = dir.path().join("third");
    ok(&third, &["load", "-i", all.to_str().unwrap()]);
    assert_eq!(
        ok(&third, &["run", "--rm", "--platform", "linux/arm64", &name]),
        arm
    );
    let (code, _, err) = k(&store, &["inspect", "--platform", "linux/riscv64", &name]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("has no image for linux/riscv64 (it has linux/amd64, linux/arm64)"),
        "{err}"
    );
    if docker_ready() {
        let archive = dir.path().join("arm64.tar");
        ok(
            &store,
            &[
                "save",
                "--platform",
                "linux/arm64",
                "--format",
                "docker",
                "-o",
                archive.to_str().unwrap(),
                &name,
            ],
        );
        let loaded = docker_cmd()
            .arg("load")
            .arg("-i")
            .arg(&archive)
            .output()
            .unwrap();
        assert!(loaded.status.success(), "{}", text(&loaded.stderr));
        let ran = docker_cmd()
            .args(["run", "--rm", "--network", "none", &name])
            .output()
            .unwrap();
        let _ = docker_cmd().args(["rmi", &name]).output();
        assert_eq!(text(&ran.stdout), arm, "{}", text(&ran.stderr));
    }
}

#[test]
fn the_sbom_reads_the_image_as_its_layers_leave_it() {
    if !need_root("build steps run as root") {
        return;
    }
    let Some(host_tar) = busybox_tar() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let k = |args: &[&str]| {
        let out = kiln()
            .arg("--root")
            .arg(&store)
            .args(args)
            .output()
            .expect("kiln");
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    k(&["import", host_tar.to_str().unwrap(), "box"]);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    // An rpm database (rpm 4.18's sqlite) holding one package, made by
    // Debian's rpm tools.
    if !crate::util::need_tool("rpmbuild", "it makes the rpm database the SBOM reads") {
        return;
    }
    let top = dir.path().join("rpm");
    std::fs::create_dir_all(top.join("SPECS")).unwrap();
    std::fs::create_dir_all(ctx.join("rpmdb")).unwrap();
    std::fs::write(
        top.join("SPECS/hello.spec"),
        "Name: kiln-hello\nVersion: 1.2.3\nRelease: 4\nSummary: t\nLicense: MIT\nBuildArch: noarch\n%description\nt\n%files\n",
    )
    .unwrap();
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
    };
    run(Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .args(["-bb"])
        .arg(top.join("SPECS/hello.spec")));
    let db = ctx.join("rpmdb");
    run(Command::new("rpm").arg("--dbpath").arg(&db).arg("--initdb"));
    run(Command::new("rpm")
        .arg("--dbpath")
        .arg(&db)
        .args(["-i", "--nodeps", "--justdb"])
        .arg(top.join("RPMS/noarch/kiln-hello-1.2.3-4.noarch.rpm")));
    // Databases written by one step and rewritten, removed or hidden by
    // the next: what the image has is what the SBOM lists.
    std::fs::write(
        ctx.join("Dockerfile"),
        r#"FROM box
COPY rpmdb/rpmdb.sqlite /var/lib/rpm/rpmdb.sqlite
RUN mkdir -p /var/lib/dpkg /lib/apk/db /usr/lib/python3/dist-packages/gone-1.0.dist-info /opt/app /srv/x && \
    printf 'Package: keep\nStatus: install ok installed\nVersion: 1\n\nPackage: old\nStatus: install ok installed\nVersion: 2\n' > /var/lib/dpkg/status && \
    printf 'Metadata-Version: 2.1\nName: gone\nVersion: 1.0\n' > /usr/lib/python3/dist-packages/gone-1.0.dist-info/METADATA && \
    printf 'P:musl\nV:1.2.4-r2\nL:MIT\n' > /lib/apk/db/installed && \
    printf '{"lockfileVersion":3,"packages":{"node_modules/hidden":{"version":"1.0.0"}}}' > /opt/app/package-lock.json && \
    printf '[[package]]\nname = "replaced"\nversion = "0.1.0"\n' > /srv/x/Cargo.lock
RUN printf 'Package: keep\nStatus: install ok installed\nVersion: 1\n' > /var/lib/dpkg/status && \
    rm -rf /usr/lib/python3/dist-packages/gone-1.0.dist-info /opt/app && mkdir /opt/app && \
    rm -rf /srv/x && echo file > /srv/x
"#,
    )
    .unwrap();
    k(&[
        "build",
        "-q",
        "--sbom=true",
        "-t",
        "sbom:1",
        ctx.to_str().unwrap(),
    ]);
    let sbom: serde_json::Value =
        serde_json::from_str(&k(&["inspect", "--sbom", "sbom:1"])).unwrap();
    let mut got: Vec<String> = sbom[0]["predicate"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {} {} {}",
                p["externalRefs"][0]["referenceLocator"].as_str().unwrap(),
                p["name"].as_str().unwrap(),
                p["versionInfo"].as_str().unwrap(),
                p["licenseDeclared"].as_str().unwrap()
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "pkg:apk/alpine/musl@1.2.4-r2?arch=amd64 musl 1.2.4-r2 MIT",
            "pkg:deb/debian/keep@1?arch=amd64 keep 1 NOASSERTION",
            "pkg:rpm/kiln-hello@1.2.3-4?arch=amd64 kiln-hello 1.2.3-4 MIT",
        ]
    );
}
