//! Golden tests of `kiln check`: `fixtures/check/<case>/` holds a Dockerfile
//! and the exact report (`stdout`). The exit code follows the report: 1 when
//! it counts errors, 0 otherwise.

use crate::util::{cases_at_least, golden, repo, run_in, text};

#[test]
fn check_goldens() {
    let mut failures = Vec::new();
    for case in cases_at_least(&repo().join("fixtures/check"), 19) {
        let out = run_in(&case, &["check", "-f", "Dockerfile"]);
        let report = text(&out.stdout);
        let last = report.lines().last().unwrap_or_default().to_string();
        let has_errors = !(last.ends_with("no problems found") || last.contains(": 0 errors"));
        assert_eq!(
            out.status.code(),
            Some(i32::from(has_errors)),
            "{}: {last}",
            case.display()
        );
        failures.extend(golden(&case.join("stdout"), &report));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
