//! Reproducible builds (issue 17): the epoch belongs to one build, also
//! through the library as `kiln serve` calls it; `--source-date-epoch=git`;
//! `--context-modes=git` across umasks and stores; `--verify-repro` and its
//! report of the first difference.

use crate::registry::ok;
use crate::util::{busybox_tar, kiln, need_root, need_tool, text};
use kiln::builder::{self, Options};
use kiln::dockerfile::Source;
use kiln::progress::Progress;
use kiln::store::Store;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

fn k(root: &Path, args: &[&str]) -> Output {
    kiln()
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_CONTEXT_MODES")
        .output()
        .expect("kiln")
}

/// A store holding busybox as `box:1` (imported at a fixed time, so that
/// every store's box:1 is the same image).
fn store() -> Option<tempfile::TempDir> {
    if !need_root("builds run steps in containers") {
        return None;
    }
    let tar = busybox_tar()?;
    let root = tempfile::tempdir().unwrap();
    let out = kiln()
        .arg("--root")
        .arg(root.path())
        .args(["import", tar.to_str().unwrap(), "box:1"])
        .env("SOURCE_DATE_EPOCH", "1600000000")
        .output()
        .unwrap();
    ok(out);
    Some(root)
}

/// Two epochs in one process, through the library as `kiln serve` builds:
/// each build has its own (the first no longer wins for the process), each
/// is reproducible in another store, and a store that cached the steps
/// with one epoch does not reuse them for the other.
#[test]
fn two_epochs_in_one_process_give_two_reproducible_digests() {
    let (Some(a), Some(b)) = (store(), store()) else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("f"), "file\n").unwrap();
    // No RUN: a RUN's container starts this process's own binary as its
    // init, and this test binary is not kiln. The COPY's mtime is clamped
    // to the epoch, and `created` is the epoch.
    let dockerfile = "FROM box:1\nCOPY f /f\nENV A=1\n";
    let source = Source::new("Dockerfile", dockerfile.as_bytes());
    let digest = |root: &Path, epoch: Option<i64>| {
        let store = Store::open(root).unwrap();
        let opts = Options {
            context: ctx.path().to_path_buf(),
            source_date_epoch: epoch,
            ..Default::default()
        };
        let (image, _) = builder::build(&store, &source, &opts, &Progress::quiet()).unwrap();
        (image.manifest_digest.to_string(), image.config)
    };
    let (one, config) = digest(a.path(), Some(1_000_000_000));
    assert_eq!(config.created.as_deref(), Some("2001-09-09T01:46:40Z"));
    let (two, config) = digest(a.path(), Some(1_100_000_000));
    assert_eq!(config.created.as_deref(), Some("2004-11-09T11:33:20Z"));
    assert_ne!(one, two);
    // The first epoch again in the same store: its own steps, not the
    // second's; then both again in a fresh store.
    assert_eq!(digest(a.path(), Some(1_000_000_000)).0, one);
    assert_eq!(digest(b.path(), Some(1_100_000_000)).0, two);
    assert_eq!(digest(b.path(), Some(1_000_000_000)).0, one);
    // Without an epoch, neither.
    let (none, config) = digest(b.path(), None);
    assert!(none != one && none != two);
    assert_ne!(config.created.as_deref(), Some("2001-09-09T01:46:40Z"));
}

/// `--source-date-epoch=git` takes the commit time of the context's HEAD;
/// the environment variable still works; bad values are refused.
#[test]
fn source_date_epoch_from_git_and_the_environment() {
    if !need_tool(
        "git",
        "--source-date-epoch=git reads the commit time with it",
    ) {
        return;
    }
    let Some(root) = store() else { return };
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    std::fs::write(c.join("Dockerfile"), "FROM box:1\nCOPY f /f\n").unwrap();
    std::fs::write(c.join("f"), "f\n").unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(c)
            .args(args)
            .env("GIT_COMMITTER_DATE", "@1500000000 +0000")
            .env("GIT_AUTHOR_DATE", "@1400000000 +0000")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    let created = |name: &str| {
        let out = ok(k(root.path(), &["inspect", name]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["Created"].as_str().unwrap().to_string()
    };
    // Not a checkout yet: refused, saying why.
    let out = k(
        root.path(),
        &[
            "build",
            "-q",
            "--source-date-epoch=git",
            c.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--source-date-epoch=git: ")
            && text(&out.stderr).contains("has no git commit to take the time of"),
        "{}",
        text(&out.stderr)
    );
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "one"]);
    let from_git = ok(k(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            "g:1",
            "--source-date-epoch=git",
            c.to_str().unwrap(),
        ],
    ));
    // The committer's time, as `git log -1 --format=%ct` gives it.
    assert_eq!(created("g:1"), "2017-07-14T02:40:00Z");
    let from_env = ok(kiln()
        .arg("--root")
        .arg(root.path())
        .args(["build", "-q", c.to_str().unwrap()])
        .env("SOURCE_DATE_EPOCH", "1500000000")
        .output()
        .unwrap());
    assert_eq!(from_env, from_git);
    let out = k(
        root.path(),
        &[
            "build",
            "-q",
            "--source-date-epoch=yesterday",
            c.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "--source-date-epoch=yesterday: expected seconds since 1970 (as `date +%s` prints) or \"git\""
        ),
        "{}",
        text(&out.stderr)
    );
}

/// The same files checked out under umask 0002 and 0022: with
/// `--context-modes=git`, the same image and a cache hit in another store
/// through `--cache-to/--cache-from`; without it, docker's behaviour (the
/// modes as they are, so two images).
#[test]
fn context_modes_git_makes_umasks_alike() {
    let (Some(a), Some(b)) = (store(), store()) else {
        return;
    };
    let checkout = |dir: u32, file: u32, exe: u32| {
        let ctx = tempfile::tempdir().unwrap();
        let c = ctx.path();
        std::fs::create_dir(c.join("src")).unwrap();
        std::fs::write(
            c.join("Dockerfile"),
            "FROM box:1\nCOPY . /app/\nCOPY --chmod=o+w src/lib.txt /chmod.txt\n",
        )
        .unwrap();
        std::fs::write(c.join("src/lib.txt"), "lib\n").unwrap();
        std::fs::write(c.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        let set = |p: &str, m: u32| {
            std::fs::set_permissions(c.join(p), std::fs::Permissions::from_mode(m)).unwrap()
        };
        set("src", dir);
        set("src/lib.txt", file);
        set("Dockerfile", file);
        set("run.sh", exe);
        ctx
    };
    let loose = checkout(0o775, 0o664, 0o775);
    let tight = checkout(0o755, 0o644, 0o755);
    let cache = tempfile::tempdir().unwrap();
    let cache_to = format!("type=local,dest={}", cache.path().display());
    let cache_from = format!("type=local,src={}", cache.path().display());
    let build = |root: &Path, ctx: &Path, extra: &[&str]| {
        let mut args = vec!["build", "-t", "app:1", "--source-date-epoch", "1600000000"];
        args.extend(extra);
        args.push(ctx.to_str().unwrap());
        let out = k(root, &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };
    let git = ["--context-modes", "git", "--progress", "plain"];
    let (one, _) = build(
        a.path(),
        loose.path(),
        &[&git[..], &["--cache-to", &cache_to]].concat(),
    );
    let (two, log) = build(
        b.path(),
        tight.path(),
        &[&git[..], &["--cache-from", &cache_from]].concat(),
    );
    assert_eq!(one, two, "the same image from both checkouts");
    assert!(
        log.contains("#2 [2/3] COPY . /app/\n#2 CACHED\n")
            && log.contains("#3 [3/3] COPY --chmod=o+w src/lib.txt /chmod.txt\n#3 CACHED\n"),
        "the COPY came from the cache:\n{log}"
    );
    let modes = ok(k(
        b.path(),
        &[
            "run",
            "--rm",
            "app:1",
            "stat",
            "-c",
            "%n %a",
            "/app/src",
            "/app/src/lib.txt",
            "/app/run.sh",
            "/app/Dockerfile",
        ],
    ));
    assert_eq!(
        modes,
        "/app/src 755\n/app/src/lib.txt 644\n/app/run.sh 755\n/app/Dockerfile 644\n"
    );
    // A symbolic --chmod works on the mode git gives, which the key saw:
    // the loose checkout's 0664 would have made 0666.
    let modes = ok(k(
        b.path(),
        &["run", "--rm", "app:1", "stat", "-c", "%a", "/chmod.txt"],
    ));
    assert_eq!(modes, "646\n");
    // The environment sets the default too.
    let from_env = ok(kiln()
        .arg("--root")
        .arg(a.path())
        .args([
            "build",
            "-q",
            "--source-date-epoch",
            "1600000000",
            loose.path().to_str().unwrap(),
        ])
        .env("KILN_CONTEXT_MODES", "git")
        .output()
        .unwrap());
    assert_eq!(from_env, one);
    // Without it: the files' own modes, as docker copies them.
    let (docker_loose, _) = build(a.path(), loose.path(), &[]);
    let (docker_tight, _) = build(a.path(), tight.path(), &[]);
    assert_ne!(docker_loose, docker_tight);
    assert_eq!(docker_tight, one, "0644/0755 files are what git gives");
    let modes = ok(k(
        a.path(),
        &[
            "run",
            "--rm",
            "app:1",
            "stat",
            "-c",
            "%a",
            "/app/src/lib.txt",
        ],
    ));
    assert_eq!(modes, "644\n");
    ok(k(
        a.path(),
        &[
            "build",
            "-q",
            "-t",
            "loose:1",
            loose.path().to_str().unwrap(),
        ],
    ));
    let modes = ok(k(
        a.path(),
        &[
            "run",
            "--rm",
            "loose:1",
            "stat",
            "-c",
            "%a",
            "/app/src/lib.txt",
            "/app/src",
        ],
    ));
    assert_eq!(modes, "664\n775\n");
}

/// `--verify-repro` passes on a reproducible build and names the first
/// difference of one that writes the time.
#[test]
fn verify_repro_passes_or_names_the_first_difference() {
    let Some(root) = store() else { return };
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    std::fs::write(c.join("f"), "f\n").unwrap();
    std::fs::write(
        c.join("Dockerfile"),
        "FROM box:1\nCOPY f /f\nRUN echo same > /same\n",
    )
    .unwrap();
    let verify = |epoch: &str| {
        k(
            root.path(),
            &[
                "build",
                "-q",
                "--source-date-epoch",
                epoch,
                "--verify-repro",
                c.to_str().unwrap(),
            ],
        )
    };
    // Built once so that the verification's first build is all cache: the
    // cached result must equal a fresh one.
    ok(verify("1600000000"));
    let out = verify("1600000000");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("reproducible: sha256:")
            && err.ends_with(" again from the same inputs in a scratch store with no cache\n"),
        "{err}"
    );
    // The scratch store is gone.
    assert_eq!(
        std::fs::read_dir(root.path().join("tmp")).unwrap().count(),
        0
    );

    std::fs::write(
        c.join("Dockerfile"),
        "FROM box:1\nCOPY f /f\nRUN cat /proc/sys/kernel/random/uuid > /built\n",
    )
    .unwrap();
    let out = verify("1600000000");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let digests: Vec<&str> = err
        .split(|ch: char| !ch.is_ascii_alphanumeric() && ch != ':')
        .filter(|w| w.starts_with("sha256:"))
        .collect();
    assert_eq!(digests.len(), 4, "{err}");
    let mut report = err.clone();
    for (i, d) in digests.iter().enumerate() {
        report = report.replacen(d, &format!("<{i}>"), 1);
    }
    assert_eq!(
        report,
        "kiln: not reproducible: <0>, then <1> built again from the same inputs in a scratch store with no cache\n\
         first difference: layer 3 of 3, made by RUN /bin/sh -c cat /proc/sys/kernel/random/uuid > /built # buildkit\n  \
         /built: content differs (<2>, then <3>)\n"
    );
    // A file with the same content and a random mtime before the epoch
    // (the clamp only lowers later ones): the mtime is what differs. The
    // epoch keeps the directories the RUN touched (/etc/, for its mount
    // points) alike even when the two builds straddle a second.
    std::fs::write(
        c.join("Dockerfile"),
        "FROM box:1\nCOPY f /f\nRUN touch -d @$(od -An -N3 -tu4 /dev/urandom | tr -d ' ') /t\n",
    )
    .unwrap();
    let out = verify("1600000000");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines[1].starts_with("first difference: layer 3 of 3, made by RUN /bin/sh -c touch"),
        "{err}"
    );
    assert!(lines[2].starts_with("  /t: mtime differs ("), "{err}");
    assert_eq!(lines.len(), 3, "{err}");
}
