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

/// What `--progress=plain` output says became of the step `text`: CACHED,
/// DONE or ERROR.
fn status<'a>(log: &'a str, text: &str) -> &'a str {
    let number = log
        .lines()
        .find_map(|l| {
            let (n, rest) = l.split_once(' ')?;
            rest.split_once("] ").filter(|(_, t)| *t == text).map(|_| n)
        })
        .unwrap_or_else(|| panic!("no step {text:?} in:\n{log}"));
    log.lines()
        .filter_map(|l| l.strip_prefix(number)?.strip_prefix(' '))
        .map(|rest| rest.split(' ').next().unwrap_or(""))
        .find(|w| matches!(*w, "CACHED" | "DONE" | "ERROR:"))
        .map(|w| w.trim_end_matches(':'))
        .unwrap_or("none")
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
    // Five layers on top of busybox: WORKDIR's /app, three COPYs and the RUN.
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 6);

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
    assert_eq!(status(&log, "COPY a.txt /a.txt"), "CACHED", "{log}");
    assert_eq!(status(&log, "RUN cat /a.txt > /b.txt"), "CACHED", "{log}");
    assert_eq!(status(&log, "COPY z.txt /z.txt"), "DONE", "{log}");
    assert_eq!(
        text(&k(root.path(), &["run", "--rm", "c:1", "cat", "/z.txt"]).stdout),
        "changed"
    );
}

/// BuildKit's testBuiltinArgs, its last build: proxy args are not part of
/// a step's key, so changing only them keeps the RUN cached (and its
/// output what the first build wrote).
#[test]
fn a_proxy_arg_change_keeps_the_cache() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1 AS build\nARG FOO\nARG BAR\nARG BAZ=bazcontent\nRUN echo -n $HTTP_PROXY::$NO_PROXY::$FOO::$BAR::$BAZ > /out\n",
        )],
    );
    let build = |args: &[&str]| {
        let mut all = vec!["build", "--progress=plain", "-t", "args:1"];
        all.extend(args);
        all.push(c.to_str().unwrap());
        let out = k(root.path(), &all);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let cat = || text(&k(root.path(), &["run", "--rm", "args:1", "cat", "/out"]).stdout);
    let step = "RUN echo -n $HTTP_PROXY::$NO_PROXY::$FOO::$BAR::$BAZ > /out";
    build(&[
        "--build-arg",
        "FOO=foocontents",
        "--build-arg",
        "http_proxy=hpvalue",
        "--build-arg",
        "NO_PROXY=npvalue",
    ]);
    assert_eq!(cat(), "hpvalue::npvalue::foocontents::::bazcontent");
    let log = build(&[
        "--build-arg",
        "FOO=foocontents",
        "--build-arg",
        "http_proxy=hpvalue2",
        "--build-arg",
        "no_proxy=npvalue2",
    ]);
    assert_eq!(status(&log, step), "CACHED", "{log}");
    assert_eq!(cat(), "hpvalue::npvalue::foocontents::::bazcontent");
    // A declared ARG's change is a miss.
    let log = build(&[
        "--build-arg",
        "FOO=foocontents2",
        "--build-arg",
        "http_proxy=hpvalue2",
    ]);
    assert_eq!(status(&log, step), "DONE", "{log}");
    assert_eq!(cat(), "hpvalue2::::foocontents2::::bazcontent");
}

/// BuildKit's testWildcardRenameCache, both halves in order in one store:
/// `COPY file* /files/` of a context whose file1 (the same bytes) was
/// renamed file2 misses the cache, so `RUN ls /files/file1` fails.
#[test]
fn wildcard_rename_invalidates_the_copy() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[
            (
                "Dockerfile",
                "FROM box:1\nCOPY file* /files/\nRUN ls /files/file1\n",
            ),
            ("file1", "foo"),
        ],
    );
    let out = k(
        root.path(),
        &["build", "--progress=plain", c.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::rename(c.join("file1"), c.join("file2")).unwrap();
    let out = k(
        root.path(),
        &["build", "--progress=plain", c.to_str().unwrap()],
    );
    let log = text(&out.stderr);
    assert!(
        !out.status.success(),
        "the renamed file hit the cache:\n{log}"
    );
    assert_eq!(status(&log, "COPY file* /files/"), "DONE", "{log}");
    assert!(log.contains("/files/file1"), "{log}");
}

/// `--cache-to ...,mounts=true` carries the RUN cache mounts the build
/// used; `--cache-from` puts them in a store that lacks them, and keeps
/// a store's own.
#[test]
fn cache_mounts_travel_with_a_local_cache() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1\nRUN --mount=type=cache,id=dl,target=/dl echo fetched > /dl/pkg && touch /done\n",
        )],
    );
    let cache = tempfile::tempdir().unwrap();
    let dest = format!(
        "--cache-to=type=local,dest={},mounts=true",
        cache.path().display()
    );
    let out = k(root.path(), &["build", "-q", &dest, c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A fresh store: the mount is there before a step that only reads it.
    let (fresh, reader) = setup().unwrap();
    write(
        reader.path(),
        &[(
            "Dockerfile",
            "FROM box:1\nRUN --mount=type=cache,id=dl,target=/dl cp /dl/pkg /got\n",
        )],
    );
    let src = format!("--cache-from=type=local,src={}", cache.path().display());
    let out_dir = tempfile::tempdir().unwrap();
    let out = k(
        fresh.path(),
        &[
            "build",
            "--progress=plain",
            &src,
            "-o",
            out_dir.path().to_str().unwrap(),
            reader.path().to_str().unwrap(),
        ],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("restored 1 cache mounts"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join("got")).unwrap(),
        "fetched\n"
    );
    // Without mounts=true the cache carries none.
    let plain = tempfile::tempdir().unwrap();
    let dest = format!("--cache-to=type=local,dest={}", plain.path().display());
    assert!(
        k(root.path(), &["build", "-q", &dest, c.to_str().unwrap()])
            .status
            .success()
    );
    let (other, _) = setup().unwrap();
    let src = format!("--cache-from=type=local,src={}", plain.path().display());
    let out = k(
        other.path(),
        &["build", "--progress=plain", &src, c.to_str().unwrap()],
    );
    assert!(
        !text(&out.stderr).contains("cache mounts"),
        "{}",
        text(&out.stderr)
    );
}

/// `--explain`: each step that misses says why, against its last build:
/// the file by path, an argument, the step before it.
#[test]
fn explain_names_what_made_each_step_miss() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[
            (
                "Dockerfile",
                "FROM box:1\nARG V=1\nCOPY src /src\nRUN echo $V > /v\nCOPY z.txt /z.txt\n",
            ),
            ("src/a.rs", "a"),
            ("src/deep/b.rs", "b"),
            ("z.txt", "z"),
        ],
    );
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "--progress=plain", "--explain"];
        args.extend(extra);
        args.push(c.to_str().unwrap());
        let out = k(root.path(), &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let misses = |log: &str| -> Vec<String> {
        log.lines()
            .filter_map(|l| {
                l.split_once(" cache miss: ")
                    .map(|(_, why)| why.to_string())
            })
            .collect()
    };
    assert_eq!(
        misses(&build(&[])),
        ["no earlier build of this step is recorded"; 3]
    );
    assert!(misses(&build(&[])).is_empty(), "a rebuild misses nothing");
    std::fs::write(c.join("src/deep/b.rs"), "changed").unwrap();
    let log = build(&[]);
    let why = misses(&log);
    assert!(
        why[0].starts_with("file src/deep/b.rs changed (content sha256:"),
        "{log}"
    );
    assert_eq!(why[1..], ["the step before it changed"; 2], "{log}");
    std::fs::remove_file(c.join("src/a.rs")).unwrap();
    assert_eq!(misses(&build(&[]))[0], "file src/a.rs was removed");
    let log = build(&["--build-arg", "V=2"]);
    let why = misses(&log);
    assert_eq!(why[0], "build arg V changed: 1 -> 2", "{log}");
    // Without --explain nothing is said, and nothing else changes.
    let out = k(
        root.path(),
        &["build", "--progress=plain", c.to_str().unwrap()],
    );
    assert!(!text(&out.stderr).contains("cache miss"));
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
    let out = k(
        root.path(),
        &["build", "--target", "nope", c.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "target stage \"nope\" could not be found (named stages: base, unused, final)"
        ),
        "{}",
        text(&out.stderr)
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
        err.lines()
            .any(|l| l.starts_with("#2 ") && l.ends_with(" before")),
        "the step's output is shown: {err}"
    );
    assert!(
        k(root.path(), &["inspect", "f:1"]).status.code() == Some(1),
        "nothing tagged"
    );
    write(c, &[("Dockerfile", "FROM nowhere:1\n")]);
    let out = k(root.path(), &["build", c.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains("base image nowhere:1 is not in the store, and pulling it failed: could not talk to docker.io"),
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
    // The third build gets the epoch as a build arg, not from the
    // environment, in a store that cached the same steps without it.
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let root = tempfile::tempdir().expect("tempdir");
            let run = |args: &[&str], env: bool| {
                let mut cmd = kiln();
                if env {
                    cmd.env("SOURCE_DATE_EPOCH", "1700000000");
                }
                let out = cmd
                    .arg("--root")
                    .arg(root.path())
                    .args(args)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", text(&out.stderr));
                text(&out.stdout)
            };
            run(&["import", tar.to_str().unwrap(), "box:1"], true);
            if i == 1 {
                std::thread::sleep(std::time::Duration::from_millis(1100));
            }
            if i == 2 {
                // This store first caches the steps built without the
                // epoch: none of them may be reused with it.
                run(&["build", "-q", c.to_str().unwrap()], false);
            }
            let build = ["build", "-q", "-t", "r:1", c.to_str().unwrap()];
            if i == 2 {
                let mut args = build.to_vec();
                args.extend(["--build-arg", "SOURCE_DATE_EPOCH=1700000000"]);
                run(&args, false)
            } else {
                run(&build, true)
            }
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(
        ids[0], ids[2],
        "--build-arg SOURCE_DATE_EPOCH works as the variable"
    );
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

#[test]
fn a_failure_report_has_the_last_20_lines_and_the_whole_log() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1\nRUN for i in $(seq 1 25); do echo line $i; done; exit 3\n",
        )],
    );
    let out = k(root.path(), &["build", c.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let shown: Vec<&str> = err.lines().filter_map(|l| l.strip_prefix(" > ")).collect();
    let want: Vec<String> = (6..=25).map(|i| format!("line {i}")).collect();
    assert_eq!(shown, want, "{err}");
    let path = err
        .lines()
        .find_map(|l| l.strip_prefix("the step's whole output: "))
        .unwrap_or_else(|| panic!("no log path in {err}"));
    let whole = std::fs::read_to_string(path).unwrap();
    assert_eq!(whole.lines().count(), 25);
    assert!(path.starts_with(root.path().to_str().unwrap()), "{path}");
}

#[test]
fn json_progress_has_one_event_per_step_state() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(c, &[("Dockerfile", "FROM box:1\nENV A=1\nRUN echo hi\n")]);
    let build = || {
        let out = k(
            root.path(),
            &["build", "--progress=json", c.to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
            .map(|v| format!("{} {} {}", v["step"], v["status"], v["name"]))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        build(),
        [
            r#"1 "started" "[1/2] FROM box:1""#,
            r#"1 "done" "[1/2] FROM box:1""#,
            r#"2 "started" "[2/2] RUN echo hi""#,
            r#"2 "done" "[2/2] RUN echo hi""#,
        ]
    );
    assert_eq!(build()[3], r#"2 "cached" "[2/2] RUN echo hi""#);
    // Each event says when, in seconds since the build started: a
    // timeline's x (kiln serve's job page draws one).
    let out = k(
        root.path(),
        &[
            "build",
            "--progress=json",
            "--no-cache",
            c.to_str().unwrap(),
        ],
    );
    let ats: Vec<f64> = text(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["at"].as_f64().expect("at"))
        .collect();
    assert_eq!(ats.len(), 4);
    assert!(ats.windows(2).all(|w| w[0] <= w[1]), "{ats:?}");
    let quiet = k(root.path(), &["build", "-q", c.to_str().unwrap()]);
    assert_eq!(text(&quiet.stderr), "");
    assert!(text(&quiet.stdout).trim().starts_with("sha256:"));
}

#[test]
fn workdir_creates_its_directory_as_a_layer_owned_by_user() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1\nUSER app\nWORKDIR /srv/data\nWORKDIR /tmp\nWORKDIR ../home\n",
        )],
    );
    let out = k(root.path(), &["build", "-t", "w:1", c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stat = k(
        root.path(),
        &[
            "run",
            "--rm",
            "-u",
            "0",
            "w:1",
            "stat",
            "-c",
            "%u:%g %a %n",
            "/srv",
            "/srv/data",
            "/tmp",
        ],
    );
    assert_eq!(
        text(&stat.stdout),
        "1000:1000 755 /srv\n1000:1000 755 /srv/data\n0:0 1777 /tmp\n",
        "{}",
        text(&stat.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&k(root.path(), &["inspect", "w:1"]).stdout).unwrap();
    assert_eq!(v[0]["Config"]["WorkingDir"], "/home");
    // busybox, then a layer per WORKDIR: an empty one where the directory
    // was there (as docker 20.10's BuildKit gives 0 B layers).
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 4);
    let history: Vec<(String, bool)> = v[0]["History"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|h| {
            (
                h["created_by"].as_str().unwrap().to_string(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let history: Vec<(&str, bool)> = history.iter().map(|(s, e)| (s.as_str(), *e)).collect();
    assert_eq!(
        history,
        [
            ("USER app", true),
            ("WORKDIR /srv/data", false),
            ("WORKDIR /tmp", false),
            ("WORKDIR /home", false),
        ]
    );
}

#[test]
fn copy_keeps_the_images_parent_directories_and_follows_its_symlinks() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[
            (
                "Dockerfile",
                "FROM box:1\nRUN chmod 0710 /home/app && ln -s /home/app /link\nCOPY f.txt /home/app/\nCOPY g.txt /link/\nCOPY --chown=app h.txt /new/dir/\n",
            ),
            ("f.txt", "f"),
            ("g.txt", "g"),
            ("h.txt", "h"),
        ],
    );
    let out = k(root.path(), &["build", "-t", "p:1", c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stat = k(
        root.path(),
        &[
            "run",
            "--rm",
            "p:1",
            "sh",
            "-c",
            "stat -c '%u:%g %a %F %n' /home/app /home/app/f.txt /home/app/g.txt /link /new /new/dir /new/dir/h.txt",
        ],
    );
    assert_eq!(
        text(&stat.stdout),
        "1000:1000 710 directory /home/app\n\
         0:0 644 regular file /home/app/f.txt\n\
         0:0 644 regular file /home/app/g.txt\n\
         0:0 777 symbolic link /link\n\
         1000:1000 755 directory /new\n\
         1000:1000 755 directory /new/dir\n\
         1000:1000 644 regular file /new/dir/h.txt\n",
        "{}",
        text(&stat.stderr)
    );
}

#[test]
fn onbuild_triggers_run_when_the_image_is_a_base() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[
            (
                "Dockerfile",
                "FROM box:1\nONBUILD COPY a.txt /from-child.txt\nONBUILD RUN echo triggered > /t\n",
            ),
            ("a.txt", "child's a"),
        ],
    );
    let out = k(root.path(), &["build", "-t", "ob:1", c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value =
        serde_json::from_slice(&k(root.path(), &["inspect", "ob:1"]).stdout).unwrap();
    assert_eq!(
        v[0]["Config"]["OnBuild"],
        serde_json::json!(["COPY a.txt /from-child.txt", "RUN echo triggered > /t"])
    );
    write(
        c,
        &[("Dockerfile", "FROM ob:1\nRUN cat /t /from-child.txt\n")],
    );
    let out = k(
        root.path(),
        &["build", "-t", "child:1", c.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = k(
        root.path(),
        &["run", "--rm", "child:1", "cat", "/t", "/from-child.txt"],
    );
    assert_eq!(text(&shown.stdout), "triggered\nchild's a");
    let v: serde_json::Value =
        serde_json::from_slice(&k(root.path(), &["inspect", "child:1"]).stdout).unwrap();
    assert!(v[0]["Config"]["OnBuild"].is_null(), "{}", v[0]["Config"]);
}

#[test]
fn independent_stages_build_in_parallel() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    // Each stage marks itself in a shared cache mount and waits up to 10 s
    // for the other's mark: stages built one after the other fail.
    let stage = |me: &str, other: &str| {
        format!(
            "FROM box:1 AS {me}\nRUN --mount=type=cache,id=rendezvous,target=/r touch /r/{me}; i=0; while [ ! -e /r/{other} ]; do i=$((i+1)); [ $i -gt 100 ] && exit 1; sleep 0.1; done; echo {me} > /{me}\n"
        )
    };
    let dockerfile = format!(
        "{}{}FROM box:1\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
        stage("a", "b"),
        stage("b", "a")
    );
    write(c, &[("Dockerfile", &dockerfile)]);
    let out = k(root.path(), &["build", "-t", "par:1", c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = k(root.path(), &["run", "--rm", "par:1", "cat", "/a", "/b"]);
    assert_eq!(text(&shown.stdout), "a\nb\n");
}

#[test]
fn outputs_local_oci_docker_and_metadata_file() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[("Dockerfile", "FROM box:1\nRUN echo made > /made.txt\n")],
    );
    let out_dir = c.join("out");
    let meta = c.join("meta.json");
    let oci = c.join("image.oci.tar");
    let docker = c.join("image.docker.tar");
    let out = k(
        root.path(),
        &[
            "build",
            "-t",
            "o:1",
            "--output",
            &format!("type=local,dest={}", out_dir.display()),
            "--output",
            &format!("type=oci,dest={}", oci.display()),
            "--output",
            &format!("type=docker,dest={}", docker.display()),
            "--metadata-file",
            meta.to_str().unwrap(),
            c.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("made.txt")).unwrap(),
        "made\n"
    );
    assert!(out_dir.join("bin/busybox").is_file());
    let id = text(&out.stdout).trim().to_string();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(m["containerimage.config.digest"], id.as_str());
    assert_eq!(m["image.name"], "o:1");
    let digest = m["containerimage.digest"].as_str().unwrap();
    assert_eq!(m["containerimage.descriptor"]["digest"], digest);
    // The build's report: each step with its outcome; a step that made a
    // layer has its key. Built again, every one is cached.
    let report = &m["kiln.build.report"][0];
    let ran = report["run"].as_u64().unwrap();
    assert!(ran >= 1, "{report}");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps[0]["outcome"], "base", "{report}");
    assert!(
        steps
            .iter()
            .filter(|s| s["outcome"] == "run")
            .all(|s| s["key"].as_str().is_some_and(|k| k.len() == 64)),
        "{report}"
    );
    let again = k(
        root.path(),
        &[
            "build",
            "-t",
            "o:1",
            "--metadata-file",
            meta.to_str().unwrap(),
            c.to_str().unwrap(),
        ],
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    let m2: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let report = &m2["kiln.build.report"][0];
    assert_eq!(
        (report["run"].as_u64(), report["cached"].as_u64()),
        (Some(0), Some(ran)),
        "{report}"
    );
    // Both archives load back into a fresh store as the same image.
    for archive in [&oci, &docker] {
        let fresh = tempfile::tempdir().unwrap();
        let out = k(fresh.path(), &["load", "-i", archive.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value =
            serde_json::from_slice(&k(fresh.path(), &["inspect", "o:1"]).stdout).unwrap();
        assert_eq!(v[0]["Id"], id.as_str(), "{}", archive.display());
    }
    let bad = k(
        root.path(),
        &["build", "--output", "type=tar,dest=x", c.to_str().unwrap()],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr)
            .contains("unsupported output type \"tar\": kiln writes local, oci and docker"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn copy_chmod_exclude_parents_and_link() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[
            (
                "Dockerfile",
                "FROM box:1\n\
                 COPY --chmod=u+x,go-w run.sh /bin/\n\
                 COPY --exclude=**/*.tmp --exclude=skip src/ /src/\n\
                 COPY --parents a/*/file.txt /p/\n\
                 COPY --parents ./a/./x/file.txt /q/\n\
                 COPY --link --chmod=0700 run.sh /linked/\n",
            ),
            ("run.sh", "#!/bin/sh\n"),
            ("src/keep.txt", "k"),
            ("src/drop.tmp", "d"),
            ("src/skip/inner.txt", "s"),
            ("src/deep/also.tmp", "d"),
            ("a/x/file.txt", "x"),
            ("a/y/file.txt", "y"),
            ("a/y/other.txt", "o"),
        ],
    );
    std::fs::set_permissions(
        c.join("run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let out = k(root.path(), &["build", "-t", "cp:1", c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = k(
        root.path(),
        &[
            "run",
            "--rm",
            "cp:1",
            "sh",
            "-c",
            "stat -c '%a %n' /bin/run.sh /linked/run.sh; find /src /p /q | sort",
        ],
    );
    assert_eq!(
        text(&listing.stdout),
        "744 /bin/run.sh\n700 /linked/run.sh\n\
         /p\n/p/a\n/p/a/x\n/p/a/x/file.txt\n/p/a/y\n/p/a/y/file.txt\n\
         /q\n/q/x\n/q/x/file.txt\n\
         /src\n/src/deep\n/src/keep.txt\n",
        "{}",
        text(&listing.stderr)
    );
    // A --link layer's key leaves out the layers below it: after a new
    // step under it, it is still a cache hit; the other COPYs are not.
    let df = std::fs::read_to_string(c.join("Dockerfile")).unwrap();
    write(
        c,
        &[(
            "Dockerfile",
            &df.replace("FROM box:1\n", "FROM box:1\nRUN echo changed > /base\n"),
        )],
    );
    let out = k(root.path(), &["build", "-t", "cp:2", c.to_str().unwrap()]);
    let log = text(&out.stderr);
    assert_eq!(
        status(&log, "COPY --link --chmod=0700 run.sh /linked/"),
        "CACHED",
        "{log}"
    );
    assert_eq!(
        status(&log, "COPY --chmod=u+x,go-w run.sh /bin/"),
        "DONE",
        "{log}"
    );

    write(
        c,
        &[("Dockerfile", "FROM box:1\nCOPY --chmod=u+q run.sh /\n")],
    );
    let out = k(root.path(), &["build", c.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(
        err.contains("error: invalid chmod \"u+q\"") && err.contains("Dockerfile:2:6"),
        "{err}"
    );
}

/// Serves `body` at every path on 127.0.0.1 (404 for paths ending in
/// `missing`) for `n` requests; returns the port.
fn http_server(body: &'static [u8], n: usize) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let Ok(mut stream) = stream else { continue };
            let mut request = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let _ = reader.read_line(&mut request);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let path = request.split(' ').nth(1).unwrap_or("");
            let head = if path.ends_with("missing") {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nConnection: close\r\n\r\n",
                    body.len()
                )
            };
            let _ = stream.write_all(head.as_bytes());
            if !path.ends_with("missing") {
                let _ = stream.write_all(body);
            }
        }
    });
    port
}

#[test]
fn add_from_a_url_with_checksum() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    let port = http_server(b"downloaded\n", 4);
    // sha256 of "downloaded\n".
    let sum = "sha256:0e3d9b1c8d6ebc8b2d3bd94b5c63b88eed2b1d0fb6d2e8a2c8ad2b0c0c8b9a1d";
    let real = {
        use sha2::Digest;
        format!("sha256:{:x}", sha2::Sha256::digest(b"downloaded\n"))
    };
    write(
        c,
        &[(
            "Dockerfile",
            &format!(
                "FROM box:1\nADD http://127.0.0.1:{port}/dir/tool.txt /opt/\nADD --checksum={real} http://127.0.0.1:{port}/again.txt /again.txt\n"
            ),
        )],
    );
    let out = k(root.path(), &["build", "-t", "url:1", c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = k(
        root.path(),
        &[
            "run",
            "--rm",
            "url:1",
            "sh",
            "-c",
            "stat -c '%a %u %Y %n' /opt/tool.txt /again.txt; cat /opt/tool.txt",
        ],
    );
    assert_eq!(
        text(&shown.stdout),
        "600 0 1700000000 /opt/tool.txt\n600 0 1700000000 /again.txt\ndownloaded\n"
    );
    write(
        c,
        &[(
            "Dockerfile",
            &format!("FROM box:1\nADD --checksum={sum} http://127.0.0.1:{port}/f.txt /\n"),
        )],
    );
    let out = k(root.path(), &["build", c.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "checksum mismatch: --checksum={sum}, but the file is {real}"
        )),
        "{err}"
    );
    assert!(err.contains("Dockerfile:2:1"), "{err}");
    write(
        c,
        &[(
            "Dockerfile",
            &format!("FROM box:1\nADD http://127.0.0.1:{port}/missing /\n"),
        )],
    );
    let out = k(root.path(), &["build", c.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains("the server answered 404 Not Found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn run_network_none_has_only_loopback() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1\nRUN --network=none ls /sys/class/net > /none.txt\nRUN ls /sys/class/net > /host.txt\n",
        )],
    );
    let out = k(root.path(), &["build", "-t", "net:1", c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let none = k(root.path(), &["run", "--rm", "net:1", "cat", "/none.txt"]);
    assert_eq!(text(&none.stdout), "lo\n");
    let host = k(root.path(), &["run", "--rm", "net:1", "cat", "/host.txt"]);
    let host_ifaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        text(&host.stdout).lines().count(),
        host_ifaces.len(),
        "a default RUN shares the host's network"
    );
}

#[test]
fn cache_mount_sharing_locked_and_private() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    // Two stages run at once. Locked: one writes start/end, then the
    // other. Private: the second gets its own empty directory.
    let stage = |name: &str, sharing: &str, id: &str| {
        format!(
            "FROM box:1 AS {name}\nRUN --mount=type=cache,id={id},sharing={sharing},target=/c echo start >> /c/log; touch /c/{name}; sleep 1; echo end >> /c/log; ls /c > /{name}.saw\n"
        )
    };
    let dockerfile = format!(
        "{}{}{}{}FROM box:1\nCOPY --from=l1 /l1.saw /\nCOPY --from=l2 /l2.saw /\nCOPY --from=p1 /p1.saw /\nCOPY --from=p2 /p2.saw /\nRUN --mount=type=cache,id=locked,target=/c cat /c/log > /locked.log\n",
        stage("l1", "locked", "locked"),
        stage("l2", "locked", "locked"),
        stage("p1", "private", "private"),
        stage("p2", "private", "private"),
    );
    write(c, &[("Dockerfile", &dockerfile)]);
    let out = k(
        root.path(),
        &["build", "-t", "share:1", c.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = k(
        root.path(),
        &[
            "run",
            "--rm",
            "share:1",
            "sh",
            "-c",
            "cat /locked.log; cat /p1.saw /p2.saw",
        ],
    );
    let shown = text(&shown.stdout);
    let (log, saw) = shown.split_at(shown.find("log\n").unwrap_or(0));
    assert_eq!(log, "start\nend\nstart\nend\n", "locked: one at a time");
    // Each private mount holds its own step's files only (plus a log).
    assert_eq!(saw, "log\np1\nlog\np2\n");
}

#[test]
fn no_cache_filter_reruns_only_the_named_stage() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1 AS deps\nRUN echo deps > /deps\nFROM box:1 AS app\nCOPY --from=deps /deps /deps\nRUN echo app > /app\n",
        )],
    );
    let build = |extra: &[&str]| {
        let mut args = vec!["build"];
        args.extend_from_slice(extra);
        args.push(c.to_str().unwrap());
        let out = k(root.path(), &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    build(&[]);
    let log = build(&["--no-cache-filter", "app"]);
    assert_eq!(status(&log, "RUN echo deps > /deps"), "CACHED", "{log}");
    assert_eq!(status(&log, "RUN echo app > /app"), "DONE", "{log}");
    let log = build(&["--no-cache-filter", "0"]);
    assert_eq!(status(&log, "RUN echo deps > /deps"), "DONE", "{log}");
}

#[test]
fn ssh_mounts_forward_an_agent_socket() {
    let Some((root, ctx)) = setup() else { return };
    if !crate::util::need_tool(
        "ssh-agent",
        "it is the agent forwarded to RUN --mount=type=ssh",
    ) {
        return;
    }
    let c = ctx.path();
    let socket = c.join("agent.sock");
    let agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Kill(agent);
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /seen\nRUN --mount=type=ssh,id=other,required=true true\n",
        )],
    );
    let forward = format!("default={}", socket.display());
    let out = k(
        root.path(),
        &[
            "build",
            "-t",
            "ssh:1",
            "--ssh",
            &forward,
            c.to_str().unwrap(),
        ],
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("ssh other is required but was not forwarded: pass --ssh other[=SOCKET]"),
        "{err}"
    );
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /seen\n",
        )],
    );
    let out = k(
        root.path(),
        &[
            "build",
            "-t",
            "ssh:1",
            "--ssh",
            &forward,
            c.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = k(
        root.path(),
        &[
            "run",
            "--rm",
            "ssh:1",
            "sh",
            "-c",
            "cat /seen; ls /run 2>&1",
        ],
    );
    assert_eq!(
        text(&shown.stdout),
        "/run/buildkit/ssh_agent.0\nls: /run: No such file or directory\n",
        "the socket was there during the step and is not in the image"
    );
    let bad = k(
        root.path(),
        &["build", "--ssh", "default=/etc/passwd", c.to_str().unwrap()],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("/etc/passwd is not a socket"));
}

#[test]
fn a_local_cache_export_lets_a_fresh_store_run_nothing() {
    let Some((a, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[
            (
                "Dockerfile",
                "FROM box:1 AS builder\nRUN echo built > /artifact\nFROM box:1\nCOPY f.txt /f.txt\nCOPY --from=builder /artifact /artifact\nRUN cat /f.txt /artifact > /both\n",
            ),
            ("f.txt", "f\n"),
        ],
    );
    let layers = |root: &Path, image: &str| {
        let v: serde_json::Value =
            serde_json::from_slice(&k(root, &["inspect", image]).stdout).unwrap();
        v[0]["RootFS"]["Layers"].clone()
    };
    let cache_max = c.join("cache-max");
    let cache_min = c.join("cache-min");
    for (dir, mode) in [(&cache_max, "max"), (&cache_min, "min")] {
        let out = k(
            a.path(),
            &[
                "build",
                "-t",
                "app:1",
                &format!("--cache-to=type=local,dest={},mode={mode}", dir.display()),
                c.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // Fresh stores with the same base (as CI runners pulling it would have).
    let base = c.join("base.tar");
    let out = k(a.path(), &["save", "box:1", "-o", base.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fresh = |cache: &Path| {
        let b = tempfile::tempdir().unwrap();
        let out = k(b.path(), &["load", "-i", base.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = k(
            b.path(),
            &[
                "build",
                "-t",
                "app:1",
                &format!("--cache-from=type=local,src={}", cache.display()),
                c.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        (b, text(&out.stderr))
    };
    let (b, log) = fresh(&cache_max);
    for step in [
        "RUN echo built > /artifact",
        "COPY f.txt /f.txt",
        "COPY --from=builder /artifact /artifact",
        "RUN cat /f.txt /artifact > /both",
    ] {
        assert_eq!(status(&log, step), "CACHED", "{step}: {log}");
    }
    assert_eq!(layers(b.path(), "app:1"), layers(a.path(), "app:1"));
    // mode=min leaves the builder stage out: it runs; the final stage's
    // steps (its inputs unchanged) still hit.
    let (_, log) = fresh(&cache_min);
    assert_eq!(status(&log, "RUN echo built > /artifact"), "DONE", "{log}");
    assert_eq!(
        status(&log, "RUN cat /f.txt /artifact > /both"),
        "CACHED",
        "{log}"
    );
    // A cache that is not there is a warning, not a failure.
    let out = k(
        a.path(),
        &[
            "build",
            "--cache-from=type=local,src=/nonexistent",
            c.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("[Warning] importing cache from"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn proxy_build_args_reach_run_but_not_the_image_and_f_reads_stdin() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    let dockerfile = "FROM box:1\nARG V=1\nRUN echo \"$HTTP_PROXY $V\" > /seen\n";
    let mut child = kiln()
        .arg("--root")
        .arg(root.path())
        .args([
            "build",
            "-t",
            "px:1",
            "-f",
            "-",
            "--build-arg",
            "HTTP_PROXY=http://proxy:3128",
            c.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("were not consumed"),
        "{}",
        text(&out.stderr)
    );
    let seen = k(root.path(), &["run", "--rm", "px:1", "cat", "/seen"]);
    assert_eq!(text(&seen.stdout), "http://proxy:3128 1\n");
    let v: serde_json::Value =
        serde_json::from_slice(&k(root.path(), &["inspect", "px:1"]).stdout).unwrap();
    let all = v[0].to_string();
    assert!(
        !all.contains("proxy:3128"),
        "the proxy is in the image: {all}"
    );
    assert!(all.contains("RUN |1 V=1 /bin/sh -c echo"), "{all}");
}

#[test]
fn add_extracts_tar_archives_by_content_in_every_compression() {
    use std::io::Write;
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    let tar_of = |name: &str| {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(name.len() as u64);
        h.set_mode(0o640);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_cksum();
        b.append_data(&mut h, format!("in/{name}"), name.as_bytes())
            .unwrap();
        b.into_inner().unwrap()
    };
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    let bz = {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        e.write_all(&tar_of("bz")).unwrap();
        e.finish().unwrap()
    };
    let xz = {
        let mut out = Vec::new();
        lzma_rs::xz_compress(&mut std::io::Cursor::new(tar_of("xz")), &mut out).unwrap();
        out
    };
    let zst = zstd::encode_all(tar_of("zst").as_slice(), 3).unwrap();
    // Names say nothing: content decides.
    for (name, bytes) in [
        ("a.bin", tar_of("plain")),
        ("b.bin", gz(&tar_of("gz"))),
        ("c.bin", bz),
        ("d.bin", xz),
        ("e.bin", zst),
        ("note.gz", gz(b"not a tar")),
    ] {
        std::fs::write(c.join(name), bytes).unwrap();
    }
    write(c, &[("Dockerfile", "FROM box:1\nADD *.bin note.gz /x/\n")]);
    let out = k(root.path(), &["build", "-t", "add:1", c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = k(
        root.path(),
        &[
            "run",
            "--rm",
            "add:1",
            "sh",
            "-c",
            "cd /x && stat -c '%u:%g %a %n' in/* && ls",
        ],
    );
    assert_eq!(
        text(&shown.stdout),
        "1234:5678 640 in/bz\n1234:5678 640 in/gz\n1234:5678 640 in/plain\n1234:5678 640 in/xz\n1234:5678 640 in/zst\nin\nnote.gz\n",
        "{}",
        text(&shown.stderr)
    );
}

#[test]
fn copy_from_an_image_in_the_store() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1\nCOPY --from=box:1 /etc/passwd /copied/passwd\nRUN cmp /etc/passwd /copied/passwd && echo same > /same\n",
        )],
    );
    let out = k(root.path(), &["build", "-t", "cf:1", c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = k(root.path(), &["run", "--rm", "cf:1", "cat", "/same"]);
    assert_eq!(text(&shown.stdout), "same\n");
}

/// The flags a CI script passes to `docker build`: labels on the image,
/// the default RUN network, extra /etc/hosts lines, this machine's
/// platform only, `--check` instead of a build, and the insecure
/// entitlement.
#[test]
fn docker_build_flags() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    let dir = c.to_str().unwrap();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1\nRUN grep -c . /proc/net/dev > /netdev; grep myhost /etc/hosts > /hosts\n",
        )],
    );
    let out = k(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            "flags:1",
            "--label",
            "a=b",
            "--label",
            "empty",
            "--add-host",
            "myhost:10.1.2.3",
            "--network",
            "none",
            "--platform",
            "linux/amd64",
            dir,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inspect: serde_json::Value =
        serde_json::from_slice(&k(root.path(), &["inspect", "flags:1"]).stdout).unwrap();
    assert_eq!(
        inspect[0]["Config"]["Labels"],
        serde_json::json!({"a": "b", "empty": ""})
    );
    let cat = |file: &str| text(&k(root.path(), &["run", "--rm", "flags:1", "cat", file]).stdout);
    assert_eq!(cat("/hosts"), "10.1.2.3\tmyhost\n");
    // Two header lines and lo: the step had no network but loopback.
    assert_eq!(cat("/netdev"), "3\n");

    // Another platform is built for, but not FROM a base of this
    // machine's (see tests/kiln/platforms.rs for one that is built).
    let out = k(root.path(), &["build", "--platform", "linux/s390x", dir]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "base box:1 in the store is for linux/amd64, and this stage builds for linux/s390x"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = k(root.path(), &["build", "--platform", "linux", dir]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--platform: invalid platform \"linux\": use os/arch[/variant]"),
        "{}",
        text(&out.stderr)
    );

    // --check: a warning fails it, as docker build --check; nothing is built.
    write(c, &[("Dockerfile", "FROM box:1\nMAINTAINER me\n")]);
    let out = k(root.path(), &["build", "--check", "-t", "checked:1", dir]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("MaintainerDeprecated"));
    assert!(!k(root.path(), &["inspect", "checked:1"]).status.success());
    write(c, &[("Dockerfile", "FROM box:1\nLABEL a=b\n")]);
    let out = k(root.path(), &["build", "--call=check", dir]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // RUN --security=insecure needs the entitlement.
    write(
        c,
        &[("Dockerfile", "FROM box:1\nRUN --security=insecure true\n")],
    );
    let out = k(root.path(), &["build", "-q", dir]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("security.insecure is not allowed"),
        "{}",
        text(&out.stderr)
    );
    let out = k(
        root.path(),
        &["build", "-q", "--allow", "security.insecure", dir],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `--build-context NAME=DIR|docker-image://REF`: `FROM NAME` and
/// `--from=NAME` read the named context before any stage or image of that
/// name, owners and contents as they are; unsupported kinds and missing
/// directories are usage errors.
#[test]
fn named_build_contexts() {
    use std::os::unix::fs::MetadataExt;
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    let extra = tempfile::tempdir().unwrap();
    write(extra.path(), &[("sub/f", "hello\n")]);
    std::os::unix::fs::lchown(extra.path().join("sub/f"), Some(7), Some(8)).unwrap();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM mydir AS d\nFROM box:1\nCOPY --from=mydir /sub/f /from-dir\nCOPY --from=d /sub/f /from-stage\nCOPY --from=box:1 /bin/busybox /never\nCOPY --from=img /etc/passwd /passwd\n",
        )],
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out = k(
        root.path(),
        &[
            "build",
            "-q",
            "--build-context",
            &format!("mydir={}", extra.path().display()),
            "--build-context",
            "img=docker-image://box:1",
            "--build-context",
            // A named context of an image's name wins over the image.
            &format!("box:1={}", extra.path().display()),
            &format!("--output=type=local,dest={}", out_dir.path().display()),
            c.to_str().unwrap(),
        ],
    );
    // `FROM box:1` is the directory now: no busybox to copy.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/bin/busybox"),
        "{}",
        text(&out.stderr)
    );

    write(
        c,
        &[(
            "Dockerfile",
            "FROM mydir AS d\nFROM box:1\nCOPY --from=mydir /sub/f /from-dir\nCOPY --from=d /sub/f /from-stage\nCOPY --from=img /etc/passwd /passwd\n",
        )],
    );
    let out = k(
        root.path(),
        &[
            "build",
            "-q",
            "--build-context",
            &format!("mydir={}", extra.path().display()),
            "--build-context",
            "img=docker-image://box:1",
            &format!("--output=type=local,dest={}", out_dir.path().display()),
            c.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in ["from-dir", "from-stage"] {
        let p = out_dir.path().join(f);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "hello\n");
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid()), (7, 8), "{f}");
    }
    assert!(
        std::fs::read_to_string(out_dir.path().join("passwd"))
            .unwrap()
            .starts_with("root:")
    );
    // The directory is read, never changed.
    assert_eq!(
        std::fs::read_to_string(extra.path().join("sub/f")).unwrap(),
        "hello\n"
    );

    // An OCI layout directory (what `kiln save` writes, unpacked) is a
    // context too: FROM it and --from it, picked by tag or alone.
    let archive = c.join("../box.oci.tar");
    let out = k(
        root.path(),
        &["save", "box:1", "-o", archive.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let layout = tempfile::tempdir().unwrap();
    let untar = std::process::Command::new("tar")
        .args(["-xf", archive.to_str().unwrap(), "-C"])
        .arg(layout.path())
        .status()
        .unwrap();
    assert!(untar.success());
    std::fs::remove_file(&archive).unwrap();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM lay\nCOPY --from=lay2 /etc/passwd /passwd2\nRUN cp /etc/passwd /passwd1\n",
        )],
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out = k(
        root.path(),
        &[
            "build",
            "-q",
            "--build-context",
            &format!("lay=oci-layout://{}", layout.path().display()),
            "--build-context",
            &format!("lay2=oci-layout://{}:1", layout.path().display()),
            &format!("--output=type=local,dest={}", out_dir.path().display()),
            c.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in ["passwd1", "passwd2"] {
        assert!(
            std::fs::read_to_string(out_dir.path().join(f))
                .unwrap()
                .starts_with("root:"),
            "{f}"
        );
    }
    // A tag the layout lacks, and an index.json that points out of the
    // layout (resolved inside it: nothing there), are clear errors.
    let fails_with = |tag: &str, want: &str| {
        let layout = layout.path().display();
        let out = k(
            root.path(),
            &[
                "build",
                "--build-context",
                &format!("lay=oci-layout://{layout}{tag}"),
                "--build-context",
                &format!("lay2=oci-layout://{layout}"),
                c.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains(want), "{}", text(&out.stderr));
    };
    fails_with(":nope", "no image \"nope\" in index.json");
    let index = layout.path().join("index.json");
    std::fs::remove_file(&index).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &index).unwrap();
    fails_with("", "index.json: No such file or directory");

    for (value, want) in [
        (
            "x=git@github.com:a/b.git",
            "git@ build contexts are not supported",
        ),
        ("x=/nonexistent/dir", "/nonexistent/dir is not a directory"),
        (
            "=dir",
            "use NAME=DIR, NAME=docker-image://REF or NAME=oci-layout://PATH[:TAG]",
        ),
    ] {
        let out = k(
            root.path(),
            &["build", "--build-context", value, c.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(2), "{value}");
        assert!(
            text(&out.stderr).contains(want),
            "{value}: {}",
            text(&out.stderr)
        );
    }
}

/// `--shm-size` sizes every RUN's /dev/shm; `--ulimit` sets its limits;
/// bad values are usage errors.
#[test]
fn shm_size_and_ulimit_reach_run() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1\nRUN df -k /dev/shm | tail -1 | awk '{print $2}' > /shm && ulimit -n > /nofile && ulimit -Hn > /nofile-hard\n",
        )],
    );
    let out = k(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            "lim:1",
            "--shm-size",
            "128m",
            "--ulimit",
            "nofile=1024:2048",
            c.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cat = |file: &str| text(&k(root.path(), &["run", "--rm", "lim:1", "cat", file]).stdout);
    assert_eq!(cat("/shm"), "131072\n");
    assert_eq!(cat("/nofile"), "1024\n");
    assert_eq!(cat("/nofile-hard"), "2048\n");
    for (flag, value, want) in [
        ("--ulimit", "nofiles=1", "invalid ulimit type: nofiles"),
        (
            "--ulimit",
            "nofile=9:1",
            "soft limit must be less than or equal to hard limit",
        ),
        ("--shm-size", "lots", "invalid size \"lots\""),
    ] {
        let out = k(root.path(), &["build", flag, value, c.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        assert!(text(&out.stderr).contains(want), "{}", text(&out.stderr));
    }
}

/// `--annotation [manifest:]KEY=VALUE` annotates the image's manifest in
/// the store (an OCI layout); other kinds are refused.
#[test]
fn annotations_go_to_the_manifest() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(c, &[("Dockerfile", "FROM box:1\nLABEL x=y\n")]);
    let out = k(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            "ann:1",
            "--annotation",
            "a=b",
            "--annotation",
            "manifest:org.example.c=d",
            c.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.path().join("index.json")).unwrap()).unwrap();
    let annotated: Vec<serde_json::Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            let hex = m["digest"].as_str()?.strip_prefix("sha256:")?;
            let blob = std::fs::read(root.path().join("blobs/sha256").join(hex)).ok()?;
            let manifest: serde_json::Value = serde_json::from_slice(&blob).ok()?;
            let config = manifest["config"]["digest"].as_str()?.to_string();
            (config == id).then(|| manifest["annotations"].clone())
        })
        .collect();
    assert_eq!(
        annotated,
        [serde_json::json!({"a": "b", "org.example.c": "d"})],
        "{index}"
    );
    let out = k(
        root.path(),
        &["build", "--annotation", "index:a=b", c.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("only manifest annotations are supported"));
}

#[test]
fn cgroup_parent_and_buildx_flags() {
    let Some((root, ctx)) = setup() else { return };
    let c = ctx.path();
    write(
        c,
        &[(
            "Dockerfile",
            "FROM box:1\nRUN grep -c kiln-test-parent/ /proc/self/cgroup > /in-parent\n",
        )],
    );
    let out_dir = tempfile::tempdir().unwrap();
    // --load and --provenance/--sbom=false are what buildx scripts pass.
    let out = k(
        root.path(),
        &[
            "build",
            "-q",
            "--cgroup-parent",
            "/kiln-test-parent",
            "--load",
            "--provenance=false",
            "--sbom=false",
            &format!("--output=type=local,dest={}", out_dir.path().display()),
            c.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let n: u32 = std::fs::read_to_string(out_dir.path().join("in-parent"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(n >= 1, "the RUN ran in no group under the parent");
    // Its groups are gone once the step is done.
    // The parent exists (the step ran in it) on the hierarchy mounted.
    for dir in crate::util::cgroup_dirs(&["memory", "pids", "cpu"], "kiln-test-parent") {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the --cgroup-parent group {}: {e}", dir.display()));
        let left: Vec<_> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", dir.display());
        let _ = std::fs::remove_dir(&dir);
    }
    for (flag, want) in [
        ("--cgroup-parent=../escape", "invalid cgroup parent"),
        (
            "--provenance=mode=fast",
            "--provenance \"mode=fast\": use true, false, mode=min or mode=max",
        ),
        ("--attest=type=vex", "use provenance or sbom"),
    ] {
        let out = k(root.path(), &["build", flag, c.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        assert!(
            text(&out.stderr).contains(want),
            "{flag}: {}",
            text(&out.stderr)
        );
    }
    // --help lists the options in docker build's order.
    let help = text(&k(root.path(), &["build", "--help"]).stdout);
    // Where option `o` (the whole word, not a prefix of a longer one) is.
    let at = |o: &str| {
        help.match_indices(o)
            .find(|(i, _)| {
                !help[i + o.len()..].starts_with(|c: char| c == '-' || c.is_alphanumeric())
            })
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("{o} not in --help"))
    };
    let order = [
        "--add-host",
        "--allow",
        "--annotation",
        "--attest",
        "--build-arg",
        "--build-context",
        "--cache-from",
        "--cache-to",
        "--call",
        "--cgroup-parent",
        "--check",
        "--file",
        "--iidfile",
        "--label",
        "--load",
        "--metadata-file",
        "--network",
        "--no-cache",
        "--no-cache-filter",
        "--output",
        "--platform",
        "--progress",
        "--provenance",
        "--pull",
        "--push",
        "--quiet",
        "--sbom",
        "--secret",
        "--shm-size",
        "--ssh",
        "--tag",
        "--target",
        "--ulimit",
    ];
    for pair in order.windows(2) {
        assert!(at(pair[0]) < at(pair[1]), "{} before {}", pair[0], pair[1]);
    }
}
