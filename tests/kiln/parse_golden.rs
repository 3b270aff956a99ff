//! Golden tests of `kiln parse` on kiln's own cases: `fixtures/parser/<case>/`
//! holds a Dockerfile and its expected dump (`result`);
//! `fixtures/parser-negative/<case>/` a Dockerfile that must fail and the
//! exact error (`stderr`).

use crate::util::{cases_at_least, golden, repo, run_in, text};

#[test]
fn parser_goldens() {
    let all = cases_at_least(&repo().join("fixtures/parser"), 72);
    let mut failures = Vec::new();
    for case in &all {
        let out = run_in(case, &["parse", "-f", "Dockerfile"]);
        assert!(
            out.status.success(),
            "{}: {}",
            case.display(),
            text(&out.stderr)
        );
        failures.extend(golden(&case.join("result"), &text(&out.stdout)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn parser_negative_goldens() {
    let all = cases_at_least(&repo().join("fixtures/parser-negative"), 14);
    let mut failures = Vec::new();
    for case in &all {
        let out = run_in(case, &["parse", "-f", "Dockerfile"]);
        assert_eq!(out.status.code(), Some(1), "{} must fail", case.display());
        assert!(out.stdout.is_empty());
        failures.extend(golden(&case.join("stderr"), &text(&out.stderr)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
