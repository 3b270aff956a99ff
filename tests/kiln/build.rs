//! `kiln build` on a busybox base: the image's files, modes, owners and
//! config; the cache; multi-stage; failure reports.

use crate::util::{busybox_tar, kiln, need_root, text};
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

/// A store holding busybox as `box:1`, and a context directory.
fn setup() -> Option<(tempfile::TempDir, tempfile::TempDir)> {
    if !need_root("builds run steps in containers") {
        return None;
    }
    let tar = busybox_tar()?;
    let root = tempfile::tempdir().expect("tempdir");
    let out = k(root.path(), &["import", tar.to_str().unwrap(), "box:1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    Some((root, tempfile::tempdir().expect("tempdir")))
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

const DOCKERFILE: &str = r#"FROM box:1
ARG GREETING=hi
ENV APP=/app
WORKDIR $APP
COPY --chown=1000:1000 a.txt ./
COPY --chmod=0600 dir/ sub/
COPY *.md docs/
RUN echo "$GREETING" > made.txt && rm -f /etc/group
USER app
EXPOSE 8080
LABEL k=v
CMD ["cat", "made.txt"]
"#;

#[test]
fn build_produces_the_files_modes_owners_and_config() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[
            ("Dockerfile", DOCKERFILE),
            ("a.txt", "a"),
            ("dir/b.txt", "b"),
            ("dir/c/d.txt", "d"),
            ("x.md", "x"),
            ("y.md", "y"),
            ("secret.md", "s"),
            (".dockerignore", "secret.md\n"),
        ],
    );
    let out = k(root.path(), &["build", "-t", "app:1", c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // CMD runs as USER app in WORKDIR, reading what RUN wrote with the ARG default.
    assert_eq!(
        text(&k(root.path(), &["run", "--rm", "app:1"]).stdout),
        "hi\n"
    );
    let listing = k(
        root.path(),
        &[
            "run",
            "--rm",
            "-u",
            "0",
            "--entrypoint",
            "",
            "app:1",
            "sh",
            "-c",
            "stat -c '%u:%g %a %n' a.txt sub sub/b.txt sub/c sub/c/d.txt; ls docs; test -e /etc/group || echo no-group",
        ],
    );
    assert_eq!(
        text(&listing.stdout),
        "1000:1000 644 a.txt\n0:0 600 sub\n0:0 600 sub/b.txt\n0:0 600 sub/c\n0:0 600 sub/c/d.txt\nx.md\ny.md\nno-group\n",
        "{}",
        text(&listing.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&k(root.path(), &["inspect", "app:1"]).stdout).unwrap();
    let cfg = &v[0]["Config"];
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["User"], "app");
    assert_eq!(cfg["Cmd"], serde_json::json!(["cat", "made.txt"]));
    assert_eq!(cfg["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(cfg["Labels"], serde_json::json!({"k": "v"}));
    let env: Vec<String> = serde_json::from_value(cfg["Env"].clone()).unwrap();
    assert!(
        env.contains(&"APP=/app".to_string()) && !env.iter().any(|e| e.starts_with("GREETING")),
        "ARGs stay out of the image: {env:?}"
    );
    // Four layers on top of busybox: three COPYs and the RUN.
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 5);

    // --build-arg overrides the default.
    let out = k(
        root.path(),
        &[
            "build",
            "-t",
            "app:2",
            "--build-arg",
            "GREETING=yo",
            c.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&k(root.path(), &["run", "--rm", "app:2"]).stdout),
        "yo\n"
    );
}

#[test]
fn unchanged_steps_are_cached_by_content_not_mtime() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[
            (
                "Dockerfile",
                "FROM box:1\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\nCOPY z.txt /z.txt\n",
            ),
            ("a.txt", "1"),
            ("z.txt", "z"),
        ],
    );
    let build = || {
        let out = k(root.path(), &["build", "-t", "c:1", c.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let cached = |log: &str| log.lines().filter(|l| l.ends_with(" CACHED")).count();
    assert_eq!(cached(&build()), 0);
    assert_eq!(cached(&build()), 3, "a rebuild runs nothing");
    // A new mtime with the same content is still a hit.
    let f = std::fs::File::options()
        .write(true)
        .open(c.join("a.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(cached(&build()), 3);
    // Changed content: that COPY and everything after it run again.
    std::fs::write(c.join("z.txt"), "changed").unwrap();
    let log = build();
    assert!(
        log.contains("COPY a.txt /a.txt CACHED") && log.contains("RUN cat /a.txt > /b.txt CACHED"),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.ends_with("COPY z.txt /z.txt")),
        "{log}"
    );
    assert_eq!(
        text(&k(root.path(), &["run", "--rm", "c:1", "cat", "/z.txt"]).stdout),
        "changed"
    );
}

#[test]
fn multi_stage_with_target_builds_only_what_it_needs() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1 AS base\nRUN echo base > /base.txt\nFROM box:1 AS unused\nRUN exit 1\nFROM box:1 AS final\nCOPY --from=base /base.txt /from-base.txt\n",
        )],
    );
    let out = k(root.path(), &["build", "-t", "m:1", c.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "the failing stage is not needed: {}",
        text(&out.stderr)
    );
    assert!(!text(&out.stderr).contains("RUN exit 1"));
    assert_eq!(
        text(
            &k(
                root.path(),
                &["run", "--rm", "m:1", "cat", "/from-base.txt"]
            )
            .stdout
        ),
        "base\n"
    );
    let out = k(
        root.path(),
        &[
            "build",
            "-t",
            "m:2",
            "--target",
            "base",
            c.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    assert_eq!(
        text(&k(root.path(), &["run", "--rm", "m:2", "cat", "/base.txt"]).stdout),
        "base\n"
    );
}

#[test]
fn a_failing_step_is_reported_with_its_line() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[("Dockerfile", "FROM box:1\nRUN echo before && exit 3\n")],
    );
    let out = k(root.path(), &["build", "-t", "f:1", c.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("error: process \"/bin/sh -c echo before && exit 3\" did not complete successfully: exit code: 3"), "{err}");
    assert!(err.contains("Dockerfile:2:1"), "{err}");
    assert!(
        text(&out.stdout).contains("before"),
        "the step's output is shown"
    );
    assert!(
        k(root.path(), &["inspect", "f:1"]).status.code() == Some(1),
        "nothing tagged"
    );
    write(c, &[("Dockerfile", "FROM nowhere:1\n")]);
    let out = k(root.path(), &["build", c.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains("base image nowhere:1 is not in the store"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn run_mounts_cache_secret_bind_tmpfs() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    // The RUN checks the secret by its digest: its value is written nowhere
    // but the secret file.
    let sum = kiln::store::Digest::of(b"s3cret-value").hex().to_string();
    let dockerfile = format!(
        "FROM box:1\n\
         RUN --mount=type=cache,target=/cache sh -c 'echo run >> /cache/log; wc -l < /cache/log > /count'\n\
         RUN --mount=type=secret,id=tok,target=/run/secrets/tok,required=true --mount=type=secret,id=tok,env=TOKEN sh -c 'test \"$(sha256sum < /run/secrets/tok | cut -c1-64)\" = {sum} && test \"$(printf %s \"$TOKEN\" | sha256sum | cut -c1-64)\" = {sum} && echo ok > /secret-ok'\n\
         RUN --mount=type=bind,source=data.txt,target=/in.txt --mount=type=tmpfs,target=/scratch sh -c 'cat /in.txt > /copied; touch /scratch/x'\n"
    );
    write(c, &[("Dockerfile", &dockerfile), ("data.txt", "data\n")]);
    let secret = c.join("tok");
    std::fs::write(&secret, "s3cret-value").unwrap();
    let build = || {
        let secret_arg = format!("id=tok,src={}", secret.display());
        let out = k(
            root.path(),
            &[
                "build",
                "-t",
                "m:1",
                "--no-cache",
                "--secret",
                &secret_arg,
                c.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    build();
    let out = k(
        root.path(),
        &[
            "run",
            "--rm",
            "m:1",
            "sh",
            "-c",
            "cat /count /secret-ok /copied; ls -d /run/secrets /cache /scratch /in.txt 2>&1 | wc -l",
        ],
    );
    // Mount points the steps created are not in the image.
    assert_eq!(
        text(&out.stdout),
        "1\nok\ndata\n4\n",
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&k(root.path(), &["run", "--rm", "m:1", "ls", "/"]).stdout).contains("cache"));
    // The cache directory persists between builds.
    build();
    assert_eq!(
        text(&k(root.path(), &["run", "--rm", "m:1", "cat", "/count"]).stdout),
        "2\n"
    );
    // The secret's value is in no blob and no cache record.
    let grep = std::process::Command::new("grep")
        .args(["-r", "-l", "s3cret-value"])
        .arg(root.path().join("blobs"))
        .arg(root.path().join("cache/steps"))
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "secret leaked into {}",
        text(&grep.stdout)
    );
    // A required secret that is missing is a clear error.
    let out = k(root.path(), &["build", c.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains("secret tok is required but was not provided"),
        "{}",
        text(&out.stderr)
    );
}

/// Mount options expand with ENV as well as ARG.
#[test]
fn regression_mount_target_expands_env() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1\nENV C=/envcache\nRUN --mount=type=cache,target=$C sh -c 'test -d /envcache && echo ok > /r'\n",
        )],
    );
    let out = k(root.path(), &["build", "-t", "e:1", c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&k(root.path(), &["run", "--rm", "e:1", "cat", "/r"]).stdout),
        "ok\n"
    );
}

/// With SOURCE_DATE_EPOCH, the same inputs give the same image digest in
/// two stores built at different times (RUN output included: its files'
/// mtimes are clamped).
#[test]
fn source_date_epoch_makes_builds_reproducible() {
    let Some((_, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[
            (
                "Dockerfile",
                "FROM box:1\nCOPY a.txt /a.txt\nRUN mkdir /d && echo x > /d/f && touch /made-now\nENV A=1\n",
            ),
            ("a.txt", "a"),
        ],
    );
    let tar = busybox_tar().expect("busybox");
    let ids: Vec<String> = (0..2)
        .map(|i| {
            let root = tempfile::tempdir().expect("tempdir");
            let run = |args: &[&str]| {
                let out = kiln()
                    .env("SOURCE_DATE_EPOCH", "1700000000")
                    .arg("--root")
                    .arg(root.path())
                    .args(args)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", text(&out.stderr));
                text(&out.stdout)
            };
            run(&["import", tar.to_str().unwrap(), "box:1"]);
            if i == 1 {
                std::thread::sleep(std::time::Duration::from_millis(1100));
            }
            run(&["build", "-q", "-t", "r:1", c.to_str().unwrap()])
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
}

#[test]
fn unused_build_args_warn_and_iidfile_is_written() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[("Dockerfile", "ARG USED=1\nFROM box:1\nARG ALSO\nRUN true\n")],
    );
    let iid = c.join("iid");
    let out = k(
        root.path(),
        &[
            "build",
            "--build-arg",
            "USED=2",
            "--build-arg",
            "ALSO=3",
            "--build-arg",
            "NOPE=4",
            "--iidfile",
            iid.to_str().unwrap(),
            c.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("[Warning] One or more build-args [NOPE] were not consumed"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&iid).unwrap(),
        text(&out.stdout).trim()
    );
}
