//! Pull and push against a real registry: Debian's docker-registry (CNCF
//! distribution) started on 127.0.0.1 at a free port, plain and with
//! htpasswd auth over TLS from a generated CA; skopeo reads what kiln
//! pushes and pushes what kiln pulls.

use crate::util::{busybox_tar, kiln, need_root, need_tool, text};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A registry process, stopped when dropped.
pub(crate) struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sh(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("running a tool");
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
    out
}

impl Registry {
    /// Starts one; with `secure`, htpasswd auth (user `kiln`, password
    /// `s3cret`) over TLS with a certificate from a CA in `certs_d()`.
    pub(crate) fn start(secure: bool) -> Option<Registry> {
        Registry::start_with(secure, "")
    }

    /// Starts one with `extra` appended to its config (top-level YAML
    /// sections such as `notifications:`).
    pub(crate) fn start_with(secure: bool, extra: &str) -> Option<Registry> {
        let tools = [
            (
                "docker-registry",
                "it is the registry pushed to and pulled from",
            ),
            ("skopeo", "it checks what kiln pushes"),
        ];
        if !tools.iter().all(|(t, why)| need_tool(t, why)) {
            return None;
        }
        if secure
            && !(need_tool("openssl", "it makes the test CA")
                && need_tool("htpasswd", "it makes the registry's password file"))
        {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            d.join("data").display()
        );
        if secure {
            let certs = d.join("certs.d").join(format!("127.0.0.1:{port}"));
            std::fs::create_dir_all(&certs).unwrap();
            sh(Command::new("openssl").current_dir(d).args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=kiln test CA",
            ]));
            sh(Command::new("openssl").current_dir(d).args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ]));
            std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
            sh(Command::new("openssl").current_dir(d).args([
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ]));
            std::fs::copy(d.join("ca.crt"), certs.join("ca.crt")).unwrap();
            let htpasswd = sh(Command::new("htpasswd").args(["-Bbn", "kiln", "s3cret"]));
            std::fs::write(d.join("htpasswd"), htpasswd.stdout).unwrap();
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                d.join("server.crt").display(),
                d.join("server.key").display(),
                d.join("htpasswd").display()
            ));
        }
        config.push_str(extra);
        std::fs::write(d.join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let registry = Registry { child, port, dir };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(registry);
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("docker-registry did not start on port {port}");
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn certs_d(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }
}

/// `kiln --root ROOT args...`, with docker's config in `docker_config` and
/// the registry's CA in `certs_d`.
pub(crate) fn k(root: &Path, env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut cmd = kiln();
    cmd.arg("--root").arg(root).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("kiln")
}

pub(crate) fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A store with busybox imported as `box:1`.
pub(crate) fn store_with_box() -> Option<tempfile::TempDir> {
    let tar = busybox_tar()?;
    let root = tempfile::tempdir().unwrap();
    ok(k(
        root.path(),
        &[],
        &["import", tar.to_str().unwrap(), "box:1"],
    ));
    Some(root)
}

fn image_id(root: &Path, image: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&ok(k(root, &[], &["inspect", image]))).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

#[test]
fn push_pull_and_skopeo_against_a_plain_registry() {
    let Some(reg) = Registry::start(false) else {
        return;
    };
    let Some(a) = store_with_box() else { return };
    let none: &[(&str, &Path)] = &[];
    let target = format!("{}/kiln/box:1", reg.host());
    let first = ok(k(a.path(), none, &["push", "box:1", &target]));
    assert!(first.contains("(2 blobs sent, 0 already there)"), "{first}");
    let again = ok(k(a.path(), none, &["push", "box:1", &target]));
    assert!(again.contains("(0 blobs sent, 2 already there)"), "{again}");
    let digest = first
        .split("digest: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();

    // skopeo sees the same manifest.
    let inspected: serde_json::Value = serde_json::from_slice(
        &sh(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ]))
        .stdout,
    )
    .unwrap();
    assert_eq!(inspected["Digest"], digest);

    // Pulled into an empty store: the same image, runnable.
    let b = tempfile::tempdir().unwrap();
    let id = ok(k(b.path(), none, &["pull", "-q", &target]));
    assert_eq!(id.trim(), image_id(a.path(), "box:1"));
    if need_root("kiln run needs root here") {
        let out = ok(k(
            b.path(),
            none,
            &["run", "--rm", &target, "echo", "pulled"],
        ));
        assert_eq!(out, "pulled\n");
    }
    // Pushed to another repository of the same registry: its blobs are
    // mounted from where they were pulled, not sent again.
    let other = format!("{}/mounted/box:1", reg.host());
    let mounted = ok(k(b.path(), none, &["push", &target, &other]));
    assert!(
        mounted.contains("(0 blobs sent, 2 already there)"),
        "{mounted}"
    );

    // An image skopeo pushes (from kiln's OCI archive) pulls back as itself.
    let archive = a.path().join("box.oci.tar");
    ok(k(
        a.path(),
        none,
        &["save", "box:1", "-o", archive.to_str().unwrap()],
    ));
    let copied = format!("{}/skopeo/box:2", reg.host());
    sh(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", archive.display()),
        &format!("docker://{copied}"),
    ]));
    let c = tempfile::tempdir().unwrap();
    let id = ok(k(c.path(), none, &["pull", "-q", &copied]));
    assert_eq!(id.trim(), image_id(a.path(), "box:1"));
    // Docker schema2 manifests, and OCI ones with zstd layers, pull too.
    let zstd_archive = a.path().join("box.zstd.tar");
    ok(k(
        a.path(),
        none,
        &[
            "save",
            "box:1",
            "--compression",
            "zstd",
            "-o",
            zstd_archive.to_str().unwrap(),
        ],
    ));
    for (repo, flags, from) in [
        ("schema2", vec!["--format", "v2s2"], &archive),
        ("zstd", vec![], &zstd_archive),
    ] {
        let dest = format!("{}/{repo}/box:1", reg.host());
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--dest-tls-verify=false"])
            .args(&flags)
            .arg(format!("oci-archive:{}", from.display()))
            .arg(format!("docker://{dest}"));
        sh(&mut cmd);
        let fresh = tempfile::tempdir().unwrap();
        let id = ok(k(fresh.path(), none, &["pull", "-q", &dest]));
        assert_eq!(id.trim(), image_id(a.path(), "box:1"), "{repo}");
        let inspected = ok(k(fresh.path(), none, &["inspect", &dest]));
        if repo == "zstd" {
            assert!(inspected.contains("tar+zstd"), "{inspected}");
        } else {
            assert!(
                inspected.contains("vnd.docker.image.rootfs.diff.tar.gzip"),
                "{inspected}"
            );
        }
        if need_root("kiln run needs root here") {
            let out = ok(k(fresh.path(), none, &["run", "--rm", &dest, "echo", repo]));
            assert_eq!(out.trim(), repo);
        }
    }

    // Clear errors for what is not there.
    let missing = k(
        c.path(),
        none,
        &["pull", &format!("{}/kiln/box:nope", reg.host())],
    );
    assert_eq!(missing.status.code(), Some(1));
    let err = text(&missing.stderr);
    assert!(
        err.contains("answered 404 to manifest nope of kiln/box: kiln/box has no manifest nope there: check the name and the tag"),
        "{err}"
    );
}

#[test]
fn login_push_pull_over_tls_with_htpasswd() {
    let Some(reg) = Registry::start(true) else {
        return;
    };
    let Some(a) = store_with_box() else { return };
    let config = tempfile::tempdir().unwrap();
    let certs = reg.certs_d();
    let env: &[(&str, &Path)] = &[("DOCKER_CONFIG", config.path()), ("KILN_CERTS_D", &certs)];
    let target = format!("{}/secure/box:1", reg.host());

    let denied = k(a.path(), env, &["push", "box:1", &target]);
    assert_eq!(denied.status.code(), Some(1));
    let err = text(&denied.stderr);
    assert!(err.contains(&format!("kiln login {}", reg.host())), "{err}");

    let login = |password: &str| {
        let mut cmd = kiln();
        cmd.args(["login", &reg.host(), "-u", "kiln", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let wrong = login("wrong");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong.stderr).contains("the user name or password is wrong"),
        "{}",
        text(&wrong.stderr)
    );
    assert_eq!(ok(login("s3cret")), "Login Succeeded\n");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["auths"][reg.host()]["auth"], "a2lsbjpzM2NyZXQ=");

    ok(k(a.path(), env, &["push", "box:1", &target]));
    let b = tempfile::tempdir().unwrap();
    let id = ok(k(b.path(), env, &["pull", "-q", &target]));
    assert_eq!(id.trim(), image_id(a.path(), "box:1"));

    assert!(ok(k(a.path(), env, &["logout", &reg.host()])).contains("Removing login credentials"));
    let c = tempfile::tempdir().unwrap();
    let after = k(c.path(), env, &["pull", &target]);
    assert_eq!(after.status.code(), Some(1), "{}", text(&after.stderr));
}

#[test]
fn a_corrupted_blob_in_the_registry_is_refused() {
    let Some(reg) = Registry::start(false) else {
        return;
    };
    let Some(a) = store_with_box() else { return };
    let none: &[(&str, &Path)] = &[];
    let target = format!("{}/kiln/box:1", reg.host());
    ok(k(a.path(), none, &["push", "box:1", &target]));
    // The biggest blob in the registry's storage is the layer: alter it.
    let mut biggest: Option<(u64, PathBuf)> = None;
    let mut stack = vec![reg.dir.path().join("data")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "data")
                && biggest.as_ref().is_none_or(|(s, _)| m.len() > *s)
            {
                biggest = Some((m.len(), p));
            }
        }
    }
    let (size, path) = biggest.expect("a blob in the registry");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(bytes.len() as u64, size);

    let b = tempfile::tempdir().unwrap();
    let out = k(b.path(), none, &["pull", &target]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(err.contains("nothing was stored"), "{err}");
    ok(k(b.path(), none, &["fsck"]));
    let images = ok(k(b.path(), none, &["images", "--format", "json"]));
    assert!(!images.contains("kiln/box"), "{images}");
}

/// busybox pushed to `reg` as `kiln/base:1`, and a context whose
/// Dockerfile is `FROM` it followed by `steps`.
fn base_and_context(reg: &Registry, steps: &str) -> Option<tempfile::TempDir> {
    let a = store_with_box()?;
    let base = format!("{}/kiln/base:1", reg.host());
    ok(k(a.path(), &[], &["push", "box:1", &base]));
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\n{steps}"),
    )
    .unwrap();
    Some(ctx)
}

#[test]
fn build_pulls_a_missing_base_and_pushes_its_tags() {
    if !need_root("builds run steps in containers") {
        return;
    }
    let Some(reg) = Registry::start(false) else {
        return;
    };
    let Some(ctx) = base_and_context(&reg, "RUN echo built > /built\n") else {
        return;
    };
    let none: &[(&str, &Path)] = &[];
    let b = tempfile::tempdir().unwrap();
    let never = k(
        b.path(),
        none,
        &["build", "--pull=never", ctx.path().to_str().unwrap()],
    );
    assert!(
        text(&never.stderr).contains("is not in the store, and --pull=never"),
        "{}",
        text(&never.stderr)
    );
    let app = format!("{}/kiln/app:1", reg.host());
    ok(k(
        b.path(),
        none,
        &["build", "-t", &app, "--push", ctx.path().to_str().unwrap()],
    ));
    let c = tempfile::tempdir().unwrap();
    ok(k(c.path(), none, &["pull", "-q", &app]));
    assert_eq!(
        ok(k(c.path(), none, &["run", "--rm", &app, "cat", "/built"])),
        "built\n"
    );
}

#[test]
fn a_registry_cache_lets_a_fresh_store_run_nothing() {
    if !need_root("builds run steps in containers") {
        return;
    }
    let Some(reg) = Registry::start(false) else {
        return;
    };
    let Some(ctx) = base_and_context(
        &reg,
        "RUN echo one > /one\nCOPY Dockerfile /df\nRUN echo two > /two\n",
    ) else {
        return;
    };
    let none: &[(&str, &Path)] = &[];
    let cache = format!("type=registry,ref={}/kiln/cache:1,mode=max", reg.host());
    let runner = |cache_flag: &str| {
        let store = tempfile::tempdir().unwrap();
        let out = k(
            store.path(),
            none,
            &[
                "build",
                "--progress=plain",
                "-t",
                "app:1",
                cache_flag,
                ctx.path().to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        (store, text(&out.stderr))
    };
    let (_, first) = runner(&format!("--cache-to={cache}"));
    assert_eq!(
        first.lines().filter(|l| l.ends_with(" CACHED")).count(),
        0,
        "{first}"
    );
    // A new runner with an empty store: every step comes from the cache.
    let (b, second) = runner(&format!("--cache-from={cache}"));
    let steps: Vec<&str> = second.lines().filter(|l| l.ends_with(" CACHED")).collect();
    assert_eq!(steps.len(), 3, "{second}");
    assert!(
        !second
            .lines()
            .any(|l| l.ends_with(" one") || l.ends_with(" two")),
        "{second}"
    );
    assert_eq!(
        ok(k(
            b.path(),
            none,
            &["run", "--rm", "app:1", "cat", "/one", "/two"]
        )),
        "one\ntwo\n"
    );
}

/// Two builders share a cache ref: one imports it, and while it builds
/// the other publishes its own steps there. The first re-reads the ref
/// before replacing it and merges: both builds' steps stay in the cache.
#[test]
fn a_cache_ref_changed_underneath_is_merged_not_overwritten() {
    if !need_root("builds run steps in containers") {
        return;
    }
    let Some(reg) = Registry::start(false) else {
        return;
    };
    // The slow step waits for the test's word (a file the test makes in
    // its context, seen through the bind), not for a guessed time.
    let Some(slow) = base_and_context(
        &reg,
        "RUN --mount=type=bind,target=/ctx i=0; while [ ! -e /ctx/go ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; echo slow > /slow\n",
    ) else {
        return;
    };
    let Some(quick) = base_and_context(&reg, "RUN echo quick > /quick\n") else {
        return;
    };
    let cache = format!("type=registry,ref={}/kiln/shared:1,mode=max", reg.host());
    let build = |store: &Path, ctx: &Path, flags: &[String]| {
        let mut cmd = kiln();
        cmd.arg("--root")
            .arg(store)
            .args(["build", "--progress=plain"])
            .args(flags)
            .arg(ctx);
        cmd
    };
    let (s1, s2, s3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let both = [
        format!("--cache-from={cache}"),
        format!("--cache-to={cache}"),
    ];
    let mut first = build(s1.path(), slow.path(), &both)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its progress, line by line: the quick build publishes once the slow
    // one has found no cache and its step runs.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = first.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut seen = String::new();
    while !seen.contains("RUN --mount=type=bind,target=/ctx") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => panic!("the slow build's step never started:\n{seen}"),
        }
    }
    let out = build(s2.path(), quick.path(), &[format!("--cache-to={cache}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(slow.path().join("go"), "").unwrap();
    let status = first.wait().unwrap();
    let err = reader.join().unwrap();
    // The context as its key saw it, for the fresh store below.
    std::fs::remove_file(slow.path().join("go")).unwrap();
    assert!(status.success(), "{err}");
    assert!(
        err.contains(&format!("no cache at {}/kiln/shared:1 yet", reg.host())),
        "{err}"
    );
    assert!(
        err.contains("merged 1 cached steps another build published to"),
        "{err}"
    );
    // A fresh store runs neither build's step.
    for ctx in [&slow, &quick] {
        let out = build(s3.path(), ctx.path(), &[format!("--cache-from={cache}")])
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert_eq!(
            err.lines().filter(|l| l.ends_with(" CACHED")).count(),
            1,
            "{err}"
        );
    }
}

#[test]
fn pulls_go_through_a_configured_mirror() {
    let Some(reg) = Registry::start(false) else {
        return;
    };
    let Some(a) = store_with_box() else { return };
    let none: &[(&str, &Path)] = &[];
    // The mirror holds what Docker Hub would: kiln/box:1 there is
    // docker.io/kiln/box:1 by name. Docker Hub itself is not reachable
    // here, so a pull that works went through the mirror.
    ok(k(
        a.path(),
        none,
        &["push", "box:1", &format!("{}/kiln/box:1", reg.host())],
    ));
    let conf = reg.dir.path().join("registries.json");
    std::fs::write(
        &conf,
        format!(r#"{{"mirrors": {{"docker.io": ["{}"]}}}}"#, reg.host()),
    )
    .unwrap();
    let b = tempfile::tempdir().unwrap();
    let id = ok(k(
        b.path(),
        &[("KILN_REGISTRIES_CONF", &conf)],
        &["pull", "-q", "kiln/box:1"],
    ));
    assert_eq!(id.trim(), image_id(a.path(), "box:1"));
    let listed = ok(k(b.path(), none, &["images"]));
    assert!(
        listed.contains("kiln/box "),
        "named as asked, not as the mirror: {listed}"
    );
}

#[test]
fn a_multi_platform_index_gives_this_machines_image() {
    let Some(reg) = Registry::start(false) else {
        return;
    };
    let Some(a) = store_with_box() else { return };
    let none: &[(&str, &Path)] = &[];
    // An OCI layout whose index lists the image for linux/amd64 and (the
    // same manifest, labelled) linux/arm64, pushed whole by skopeo.
    let archive = a.path().join("box.tar");
    ok(k(
        a.path(),
        none,
        &["save", "box:1", "-o", archive.to_str().unwrap()],
    ));
    let layout = a.path().join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    sh(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout));
    let index_path = layout.join("index.json");
    let top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let mut manifest = top["manifests"][0].clone();
    manifest.as_object_mut().unwrap().remove("annotations");
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let other_arch = if host_arch == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let entry = |arch: &str| {
        let mut m = manifest.clone();
        m["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        m
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(other_arch), entry(host_arch)],
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    let digest = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&bytes))
    };
    std::fs::write(layout.join("blobs/sha256").join(&digest), &bytes).unwrap();
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{digest}"),
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    std::fs::write(&index_path, serde_json::to_vec(&top).unwrap()).unwrap();
    let target = format!("{}/kiln/multi:1", reg.host());
    sh(Command::new("skopeo").args([
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{target}"),
    ]));

    let b = tempfile::tempdir().unwrap();
    let id = ok(k(b.path(), none, &["pull", "-q", &target]));
    assert_eq!(id.trim(), image_id(a.path(), "box:1"));
    let c = tempfile::tempdir().unwrap();
    let out = k(
        c.path(),
        none,
        &["pull", "--platform", "linux/s390x", &target],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "has no image for linux/s390x (it has: linux/{other_arch}, linux/{host_arch}); choose one with --platform"
        )),
        "{err}"
    );
}

#[test]
fn credential_helpers_keep_the_password_out_of_config_json() {
    let Some(reg) = Registry::start(true) else {
        return;
    };
    let Some(a) = store_with_box() else { return };
    // A credential helper as docker-credential-* programs behave: store
    // reads JSON, get prints it, erase forgets it.
    let helpers = tempfile::tempdir().unwrap();
    let script = helpers.path().join("docker-credential-kilntest");
    std::fs::write(
        &script,
        "#!/bin/sh\nd=$(dirname \"$0\")\ncase \"$1\" in\n  store) cat > \"$d/stored.json\" ;;\n  get) read server; if [ -f \"$d/stored.json\" ]; then cat \"$d/stored.json\"; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n  erase) rm -f \"$d/stored.json\" ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        r#"{"credsStore": "kilntest"}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        helpers.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let certs = reg.certs_d();
    let run = |args: &[&str], stdin: &str| {
        let mut cmd = kiln();
        cmd.arg("--root")
            .arg(a.path())
            .args(args)
            .env("PATH", &path)
            .env("DOCKER_CONFIG", config.path())
            .env("KILN_CERTS_D", &certs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    ok(run(
        &["login", &reg.host(), "-u", "kiln", "--password-stdin"],
        "s3cret\n",
    ));
    let saved = std::fs::read_to_string(config.path().join("config.json")).unwrap();
    assert!(
        !saved.contains("auth\""),
        "no password in config.json: {saved}"
    );
    let stored = std::fs::read_to_string(helpers.path().join("stored.json")).unwrap();
    assert!(stored.contains("\"Secret\":\"s3cret\""), "{stored}");
    ok(run(
        &["push", "box:1", &format!("{}/helper/box:1", reg.host())],
        "",
    ));
    ok(run(&["logout", &reg.host()], ""));
    assert!(!helpers.path().join("stored.json").exists());
}

/// The outcomes of a build report's keyed steps, in order.
fn outcomes(report: &serde_json::Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["key"].is_string())
        .filter_map(|s| s["outcome"].as_str().map(str::to_string))
        .collect()
}

/// Issue 31's fleet step cache: a warmer builds one repository's
/// Dockerfile into a step cache (`mode=steps`, each step its own tag); a
/// fresh runner building a second repository that shares the first steps
/// looks each step up by its key and runs only the steps that differ; its
/// own export writes only the steps the fleet lacked.
#[test]
fn a_fleet_step_cache_runs_only_the_steps_that_differ() {
    if !need_root("builds run steps in containers") {
        return;
    }
    let Some(reg) = Registry::start(false) else {
        return;
    };
    let steps = "RUN echo one > /one\nRUN echo two > /two\nCOPY own /own\nRUN cat /own > /mine\n";
    let Some(first) = base_and_context(&reg, steps) else {
        return;
    };
    let second = tempfile::tempdir().unwrap();
    std::fs::copy(
        first.path().join("Dockerfile"),
        second.path().join("Dockerfile"),
    )
    .unwrap();
    std::fs::write(first.path().join("own"), "first\n").unwrap();
    std::fs::write(second.path().join("own"), "second\n").unwrap();
    let repo = format!("{}/team/kiln-cache", reg.host());
    let cache = format!("type=registry,ref={repo},mode=steps");
    let tags = || -> Vec<String> {
        let body = reqwest::blocking::get(format!(
            "http://{}/v2/team/kiln-cache/tags/list",
            reg.host()
        ))
        .and_then(|r| r.text())
        .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let mut t: Vec<String> = v["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        t.sort();
        t
    };
    let none: &[(&str, &Path)] = &[];
    let build = |ctx: &Path, flags: &[String]| {
        let store = tempfile::tempdir().unwrap();
        let meta = store.path().join("meta.json");
        let mut args = vec![
            "build".to_string(),
            "--progress=plain".into(),
            "-t".into(),
            "app:1".into(),
            format!("--metadata-file={}", meta.display()),
        ];
        args.extend(flags.iter().cloned());
        args.push(ctx.to_str().unwrap().into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = k(store.path(), none, &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
        let report = meta["kiln.build.report"][0].clone();
        (store, text(&out.stderr), report)
    };
    // The warmer: four steps, four tags, each named by its step key.
    let (_, _, warmed) = build(first.path(), &[format!("--cache-to={cache}")]);
    assert_eq!(
        (warmed["run"].as_u64(), warmed["cached"].as_u64()),
        (Some(4), Some(0))
    );
    let written = tags();
    assert_eq!(written.len(), 4, "{written:?}");
    let keys: Vec<String> = warmed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["key"].as_str().map(|k| format!("k-{k}")))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(written, sorted, "a tag per step key");
    // A fresh runner on the second repository: the two shared RUNs come
    // from the fleet, the COPY of its own file and what follows run.
    let (store, said, report) = build(
        second.path(),
        &[
            format!("--cache-from={cache}"),
            format!("--cache-to={cache}"),
        ],
    );
    assert!(
        said.contains(&format!("looking steps up by key in {repo}")),
        "{said}"
    );
    let steps = outcomes(&report);
    assert_eq!(steps, ["cached", "cached", "run", "run"], "{report}");
    assert_eq!(
        report["exports"][0]["steps"], 2,
        "only the steps the fleet lacked: {report}"
    );
    assert_eq!(tags().len(), 6);
    // The image has the fleet's files and its own.
    let out = k(
        store.path(),
        none,
        &["run", "--rm", "app:1", "cat", "/one", "/two", "/mine"],
    );
    assert_eq!(ok(out), "one\ntwo\nsecond\n");
    // A step whose layer went from the registry (deleted under a reader)
    // is a miss, never a broken build: it runs, and so does what follows.
    let manifest: serde_json::Value = serde_json::from_str(
        &reqwest::blocking::Client::new()
            .get(format!(
                "http://{}/v2/team/kiln-cache/manifests/{}",
                reg.host(),
                keys[1]
            ))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .and_then(|r| r.text())
            .unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let hex = layer.strip_prefix("sha256:").unwrap();
    let blob = reg
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex);
    std::fs::remove_dir_all(&blob).unwrap();
    let (_, said, report) = build(first.path(), &[format!("--cache-from={cache}")]);
    let steps = outcomes(&report);
    assert_eq!(steps, ["cached", "run", "run", "run"], "{said}");
    // A step's tag defines that step alone: an image there that lists
    // other steps too (a mistaken or hostile writer) gives a runner
    // nothing more.
    let third = tempfile::tempdir().unwrap();
    std::fs::write(
        third.path().join("Dockerfile"),
        std::fs::read_to_string(first.path().join("Dockerfile"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
            + "\nRUN echo x > /x\nRUN echo y > /y\n",
    )
    .unwrap();
    let (writer, _, report) = build(third.path(), &[]);
    let key = report["steps"][1]["key"].as_str().unwrap().to_string();
    let poison = format!("{}/team/poison", reg.host());
    ok(k(
        writer.path(),
        none,
        &[
            "build",
            &format!("--cache-to=type=registry,ref={poison}:k-{key},mode=max"),
            third.path().to_str().unwrap(),
        ],
    ));
    let (_, said, report) = build(
        third.path(),
        &[
            format!("--cache-from=type=registry,ref={poison},mode=steps"),
            "--explain".into(),
        ],
    );
    assert_eq!(outcomes(&report), ["cached", "run"], "{said}");
    // --explain names the key the fleet was asked for.
    let asked = report["steps"][2]["key"].as_str().unwrap();
    assert!(
        said.contains(&format!(
            "not in the fleet's step cache ({poison}): looked for k-{asked}"
        )),
        "{said}"
    );
    // A step cache is a repository: a tag in it is refused.
    let bad = k(
        store.path(),
        none,
        &[
            "build",
            &format!("--cache-from=type=registry,ref={repo}:x,mode=steps"),
            ".",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("mode=steps takes a repository (REGISTRY/NAME)"),
        "{}",
        text(&bad.stderr)
    );
}
