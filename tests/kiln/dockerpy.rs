//! docker-py's own integration suite against kiln's Docker API (issue 27):
//! the suite of the version Debian's python3-docker is (5.0.3, its PyPI
//! source archive, which `.ci/run` fetches by hash into target/dockerpy),
//! run by tests/dockerpy/run.sh inside a network namespace of its own.
//!
//! `tests/dockerpy/expected-failures.txt` lists the tests kiln still fails,
//! each with its reason: a test that fails and is not listed is a
//! regression; a listed test that passes must leave the list. Either
//! fails this test, so the list is always the truth README quotes.

use crate::util::{busybox_docker_tar, need_root, need_tool, repo, text};
use std::collections::BTreeSet;
use std::process::Command;

/// Where .ci/run unpacks the suite.
fn suite_dir() -> std::path::PathBuf {
    std::env::var_os("KILN_DOCKERPY_DIR")
        .map(Into::into)
        .unwrap_or_else(|| repo().join("target/dockerpy/docker-5.0.3"))
}

/// The outcome of each test in a junit report: (id, passed). Skipped
/// tests are left out (the suite skips what the API version lacks).
fn outcomes(junit: &str) -> Vec<(String, bool)> {
    let attr = |tag: &str, name: &str| -> String {
        let key = format!(" {name}=\"");
        tag.find(&key)
            .map(|i| {
                let rest = &tag[i + key.len()..];
                rest[..rest.find('"').unwrap_or(rest.len())].to_string()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for case in junit.split("<testcase").skip(1) {
        let head = &case[..case.find('>').unwrap_or(case.len())];
        let body = &case[..case.find("</testcase>").unwrap_or(case.len())];
        let id = format!("{}::{}", attr(head, "classname"), attr(head, "name"));
        if body.contains("<skipped") {
            continue;
        }
        let failed = body.contains("<failure") || body.contains("<error");
        out.push((id, !failed));
    }
    out
}

/// The listed tests: `id  # reason` lines, and those marked `~ id` (a
/// race of the test's own, either outcome allowed, the reason said).
fn expected_failures() -> (BTreeSet<String>, BTreeSet<String>) {
    let list = std::fs::read_to_string(repo().join("tests/dockerpy/expected-failures.txt"))
        .expect("tests/dockerpy/expected-failures.txt");
    let (mut failing, mut racy) = (BTreeSet::new(), BTreeSet::new());
    for line in list.lines() {
        let id = line.split('#').next().unwrap_or("").trim();
        match id.strip_prefix("~ ") {
            Some(id) => racy.insert(id.trim().to_string()),
            None if !id.is_empty() => failing.insert(id.to_string()),
            None => false,
        };
    }
    (failing, racy)
}

#[test]
fn docker_pys_integration_suite_against_kiln() {
    if !need_root("the engine runs containers and a network namespace")
        || !need_tool("nsenter", "the suite runs in a network namespace")
        || !need_tool("pytest-3", "python3-pytest runs docker-py's suite")
    {
        return;
    }
    let suite = suite_dir();
    if !suite.join("tests/integration").is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing: .ci/run fetches docker-py's suite",
            suite.display()
        );
        eprintln!("skipped: docker-py's suite is not at {}", suite.display());
        return;
    }
    let Some(tar) = busybox_docker_tar() else {
        return;
    };
    let out_dir = tempfile::tempdir().unwrap();
    let ran = Command::new(repo().join("tests/dockerpy/run.sh"))
        .arg(&suite)
        .arg(out_dir.path())
        .arg("kiln")
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg(tar)
        .output()
        .expect("tests/dockerpy/run.sh");
    assert!(
        ran.status.success(),
        "run.sh: {}{}",
        text(&ran.stdout),
        text(&ran.stderr)
    );
    let junit = std::fs::read_to_string(out_dir.path().join("junit.xml")).unwrap();
    // Kept for people: the errors behind the list's reasons.
    let _ = std::fs::write(repo().join("target/dockerpy/kiln-junit.xml"), &junit);
    let results = outcomes(&junit);
    let passed = results.iter().filter(|(_, ok)| *ok).count();
    eprintln!(
        "docker-py 5.0.3 against kiln: {passed} passed, {} failed",
        results.len() - passed
    );
    // The suite ran for real: hundreds of tests, most of them passing.
    assert!(results.len() > 200, "only {} tests ran", results.len());
    let (listed, racy) = expected_failures();
    let mut wrong = Vec::new();
    for (id, ok) in results.iter().filter(|(id, _)| !racy.contains(id)) {
        match (ok, listed.contains(id)) {
            (false, false) => wrong.push(format!("fails, not listed: {id}")),
            (true, true) => wrong.push(format!("passes now, remove it from the list: {id}")),
            _ => {}
        }
    }
    let ran_ids: BTreeSet<&str> = results.iter().map(|(id, _)| id.as_str()).collect();
    for id in &listed {
        if !ran_ids.contains(id.as_str()) {
            wrong.push(format!("listed but did not run: {id}"));
        }
    }
    let log = std::fs::read_to_string(out_dir.path().join("pytest.log")).unwrap_or_default();
    assert!(
        wrong.is_empty(),
        "{}\n\npytest's log (end):\n{}",
        wrong.join("\n"),
        log.lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn junit_outcomes_are_read() {
    let junit = r#"<testsuite><testcase classname="tests.integration.a_test.T" name="test_x" time="1"/><testcase classname="c" name="f"><failure message="m">x</failure></testcase><testcase classname="c" name="s"><skipped/></testcase><testcase classname="c" name="e"><error/></testcase></testsuite>"#;
    assert_eq!(
        outcomes(junit),
        [
            ("tests.integration.a_test.T::test_x".to_string(), true),
            ("c::f".to_string(), false),
            ("c::e".to_string(), false),
        ]
    );
}
