//! BuildKit's own parser test files and real-world Dockerfiles, from
//! ../shared/conformance (never copied into this repository).

use crate::util::{cases, conformance, run_in, text};

#[test]
fn buildkit_parser_testfiles_dump_byte_for_byte() {
    let Some(dir) = conformance("parser/testfiles") else {
        return;
    };
    let mut failures = Vec::new();
    let all = cases(&dir);
    assert!(
        all.len() >= 33,
        "expected BuildKit's 33 cases, found {}",
        all.len()
    );
    for case in &all {
        let out = run_in(case, &["parse", "-f", "Dockerfile"]);
        let want = std::fs::read(case.join("result")).expect("reading result");
        if !out.status.success() || out.stdout != want {
            failures.push(format!(
                "{}: exit {:?}\n--- want\n{}--- got\n{}{}",
                case.display(),
                out.status.code(),
                text(&want),
                text(&out.stdout),
                text(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn buildkit_negative_testfiles_are_rejected() {
    let Some(dir) = conformance("parser/testfiles-negative") else {
        return;
    };
    let all = cases(&dir);
    assert!(all.len() >= 4);
    for case in &all {
        let out = run_in(case, &["parse", "-f", "Dockerfile"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{} should fail: {}",
            case.display(),
            text(&out.stdout)
        );
        assert!(
            out.stdout.is_empty(),
            "{}: nothing on stdout",
            case.display()
        );
        assert!(
            text(&out.stderr).starts_with("error: "),
            "{}: {}",
            case.display(),
            text(&out.stderr)
        );
    }
}

#[test]
fn realworld_dockerfiles_check_without_errors() {
    let Some(dir) = conformance("realworld") else {
        return;
    };
    let all = cases(&dir);
    assert!(
        all.len() >= 22,
        "expected 22 real-world Dockerfiles, found {}",
        all.len()
    );
    for case in &all {
        let out = run_in(case, &["check", "-f", "Dockerfile"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}:\n{}",
            case.display(),
            text(&out.stdout)
        );
        let parse = run_in(case, &["parse", "--json", "-f", "Dockerfile"]);
        assert!(parse.status.success(), "{}", case.display());
        let json: serde_json::Value = serde_json::from_slice(&parse.stdout).expect("valid JSON");
        assert_eq!(
            json["instructions"][0]["name"],
            "FROM",
            "{}",
            case.display()
        );
    }
}
