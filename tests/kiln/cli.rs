//! The command line: input from a file or stdin, JSON output, exit codes,
//! error rendering.

use crate::util::{kiln, repo, run_in, run_with_stdin, text};

#[test]
fn parse_reads_stdin() {
    let out = run_with_stdin(
        &["parse", "-f", "-"],
        b"FROM busybox\nCOPY --from=build a /b\n",
    );
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "(from \"busybox\")\n(copy [\"--from=build\"] \"a\" \"/b\")\n"
    );
}

#[test]
fn parse_json_schema() {
    let input = b"# syntax=docker/dockerfile:1\nFROM busybox AS base\nRUN --mount=type=cache,target=/c <<EOF\necho hi\nEOF\nONBUILD COPY a b\nCMD [\"sh\"]\n";
    let out = run_with_stdin(&["parse", "--json", "-f", "-"], input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["directives"]["syntax"], "docker/dockerfile:1");
    let ins = v["instructions"].as_array().expect("array");
    assert_eq!(ins.len(), 4);
    assert_eq!(ins[0]["name"], "FROM");
    assert_eq!(ins[0]["line"], 2);
    assert_eq!(ins[0]["args"], serde_json::json!(["busybox", "AS", "base"]));
    assert_eq!(ins[1]["name"], "RUN");
    assert_eq!(ins[1]["line"], 3);
    assert_eq!(ins[1]["end_line"], 5);
    assert_eq!(
        ins[1]["flags"],
        serde_json::json!(["--mount=type=cache,target=/c"])
    );
    assert_eq!(ins[1]["heredocs"][0]["name"], "EOF");
    assert_eq!(ins[1]["heredocs"][0]["content"], "echo hi\n");
    assert_eq!(ins[1]["heredocs"][0]["expand"], true);
    assert_eq!(ins[2]["name"], "ONBUILD");
    assert_eq!(ins[2]["onbuild"]["name"], "COPY");
    assert_eq!(ins[2]["onbuild"]["args"], serde_json::json!(["a", "b"]));
    assert_eq!(ins[3]["json"], true);
}

#[test]
fn missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_in(dir.path(), &["parse"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: cannot read Dockerfile: No such file or directory"),
        "{err}"
    );
    assert!(
        err.contains("help: pass the Dockerfile's path with -f"),
        "{err}"
    );
}

#[test]
fn syntax_error_shows_location_line_and_hint() {
    let out = run_with_stdin(&["parse", "-f", "-"], b"FROM busybox\nRUN <<EOF\necho\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: unterminated heredoc EOF\n --> <stdin>:2:1\n  |\n2 | / RUN <<EOF\n3 | | echo\n  | |____^\n  |\n  = help: end the heredoc with a line that holds only EOF\n"
    );
}

#[test]
fn bad_flag_is_a_usage_error() {
    let out = kiln().args(["parse", "--bogus"]).output().expect("kiln");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unexpected argument '--bogus'"));
}

#[test]
fn check_exit_codes() {
    let warn = run_with_stdin(&["check", "-f", "-"], b"FROM busybox\nMAINTAINER me\n");
    assert_eq!(warn.status.code(), Some(0), "warnings only: exit 0");
    assert!(text(&warn.stdout).ends_with("<stdin>: 0 errors, 1 warning\n"));
    let bad = run_with_stdin(&["check", "-f", "-"], b"FROM busybox\nRUNN x\n");
    assert_eq!(bad.status.code(), Some(1));
    let clean = run_with_stdin(&["check", "-f", "-"], b"FROM busybox\nCMD [\"sh\"]\n");
    assert_eq!(
        (clean.status.code(), text(&clean.stdout)),
        (Some(0), "<stdin>: no problems found\n".to_string())
    );
}

/// README's main command: build the example on a busybox base and run it.
#[test]
fn readme_example_builds_and_runs() {
    if !crate::util::need_root("building runs containers") {
        return;
    }
    let Some(tar) = crate::util::busybox_tar() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let k = |args: &[&str]| {
        kiln()
            .arg("--root")
            .arg(root.path())
            .args(args)
            .output()
            .expect("kiln")
    };
    assert!(
        k(&["import", tar.to_str().unwrap(), "busybox:local"])
            .status
            .success()
    );
    let out = k(&[
        "build",
        "-t",
        "hello:1",
        repo().join("examples/hello").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = k(&["run", "--rm", "hello:1"]);
    assert_eq!(text(&out.stdout), "hello from a kiln-built image\n");
}

#[test]
fn readme_example_parses_and_checks() {
    let example = repo().join("examples/hello");
    let out = run_in(&example, &["check", "-f", "Dockerfile"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let out = run_in(&example, &["parse", "-f", "Dockerfile"]);
    assert!(
        text(&out.stdout)
            .starts_with("(arg \"BASE=busybox:local\")\n(from \"$BASE\" \"AS\" \"build\")\n"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn help_lists_subcommands() {
    let out = kiln().arg("--help").output().expect("kiln");
    let help = text(&out.stdout);
    for cmd in ["parse", "check"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[test]
fn closed_stdout_is_not_an_error() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let big = "FROM a\n".to_string() + &"RUN x\n".repeat(200_000);
    let mut child = kiln()
        .args(["parse", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(big.as_bytes())
        .expect("write");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    assert_eq!(first, "(from \"a\")\n");
    // stdout is dropped here: kiln's further writes hit a closed pipe.
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn check_with_context_reports_copies_of_ignored_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY secret.env app.py /app/\nCOPY docs/guide.md /doc/\n",
    )
    .expect("write");
    std::fs::write(ctx.join(".dockerignore"), "*.env\ndocs\n").expect("write");
    let out = run_in(ctx, &["check", "."]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "warning[CopyIgnoredFile]: Attempting to Copy file \"secret.env\" that is excluded by .dockerignore\n --> ./Dockerfile:2:1\n  |\n2 | COPY secret.env app.py /app/\n  | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n  |\n  = help: Attempting to Copy file that is excluded by .dockerignore (https://docs.docker.com/go/dockerfile/rule/copy-ignored-file/)\n\nwarning[CopyIgnoredFile]: Attempting to Copy file \"docs/guide.md\" that is excluded by .dockerignore\n --> ./Dockerfile:3:1\n  |\n3 | COPY docs/guide.md /doc/\n  | ^^^^^^^^^^^^^^^^^^^^^^^^\n  |\n  = help: Attempting to Copy file that is excluded by .dockerignore (https://docs.docker.com/go/dockerfile/rule/copy-ignored-file/)\n\n./Dockerfile: 0 errors, 2 warnings\n"
    );
    // An exception (`!pattern`) makes BuildKit leave the rule out: what
    // is taken back cannot be told from the file alone.
    std::fs::write(ctx.join(".dockerignore"), "*.env\ndocs\n!docs/guide.md\n").expect("write");
    let out = run_in(ctx, &["check", "."]);
    assert_eq!(text(&out.stdout), "./Dockerfile: no problems found\n");
    // Without a context there is no .dockerignore to consult.
    let out = run_in(ctx, &["check"]);
    assert_eq!(text(&out.stdout), "Dockerfile: no problems found\n");
}

#[test]
fn dockerfile_specific_ignore_file_takes_precedence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path();
    std::fs::write(ctx.join("app.Dockerfile"), "FROM busybox\nCOPY a b /x/\n").expect("write");
    std::fs::write(ctx.join(".dockerignore"), "a\n").expect("write");
    std::fs::write(ctx.join("app.Dockerfile.dockerignore"), "b\n").expect("write");
    let out = run_in(ctx, &["check", "-f", "app.Dockerfile", "."]);
    let report = text(&out.stdout);
    assert!(report.contains("Copy file \"b\""), "{report}");
    assert!(!report.contains("Copy file \"a\""), "{report}");
}

#[test]
fn broken_dockerignore_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Dockerfile"), "FROM busybox\n").expect("write");
    std::fs::write(dir.path().join(".dockerignore"), "ok\n[oops\n").expect("write");
    let out = run_in(dir.path(), &["check", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: ./.dockerignore:2: invalid pattern \"[oops\": unclosed character class\n"
    );
}
