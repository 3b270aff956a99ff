//! Property tests: no input makes the front end panic. Arbitrary bytes, and
//! real Dockerfiles with random edits, go through every layer (syntax, dump,
//! JSON view, typed instructions, lint), the shell lexer and .dockerignore.

use crate::util::{cases, repo};
use kiln::context::ignore::Matcher;
use kiln::dockerfile::{Source, dump, instructions, json, lint, parse, shell::Lexer};
use proptest::prelude::*;
use std::path::Path;

fn every_layer(bytes: &[u8]) {
    let source = Source::new("Dockerfile", bytes);
    if let Ok(ast) = parse(&source) {
        let dumped = dump::dump(&ast);
        assert_eq!(dumped.lines().count(), ast.nodes.len());
        let _ = json::to_json(&ast, &source);
        let (_, errors) = instructions::typed(&ast);
        for e in errors {
            assert!(
                e.span.end <= source.text.len() && e.span.start <= e.span.end,
                "span out of range: {e:?}"
            );
        }
        let _ = lint::lint(&ast);
    }
    let text = String::from_utf8_lossy(bytes);
    let env = |name: &str| name.len().is_multiple_of(2).then_some("v");
    let _ = Lexer::new('\\').process_word(&text, &env);
    let _ = Lexer::new('`').process_words(&text, &env);
    let _ = Matcher::parse(&text, Path::new(".dockerignore")).map(|m| m.is_ignored(&text));
}

fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in ["fixtures/parser", "fixtures/check"] {
        for case in cases(&repo().join(dir)) {
            out.push(std::fs::read(case.join("Dockerfile")).expect("seed"));
        }
    }
    out
}

/// Pieces that exercise the grammar's corners when spliced in anywhere.
const SPLICES: [&[u8]; 16] = [
    b"\\\n",
    b"`\n",
    b"<<EOF\n",
    b"<<-'E'\n",
    b"\nEOF\n",
    b"[\"",
    b"\"]",
    b"--",
    b"--mount=",
    b"${",
    b"}",
    b"\r\n",
    b"# escape=`\n",
    b"\xff",
    b"ONBUILD ",
    b"\"",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        every_layer(&bytes);
    }

    #[test]
    fn arbitrary_lines_never_panic(lines in proptest::collection::vec("[ -~\t]{0,40}", 0..20)) {
        every_layer(lines.join("\n").as_bytes());
    }

    #[test]
    fn mutated_dockerfiles_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..SPLICES.len(), any::<bool>()), 1..8),
    ) {
        let seeds = seeds();
        let mut bytes = seed.get(&seeds).clone();
        for (at, splice, delete) in edits {
            let i = if bytes.is_empty() { 0 } else { at.index(bytes.len()) };
            if delete && !bytes.is_empty() {
                bytes.remove(i);
            } else {
                bytes.splice(i..i, SPLICES[splice].iter().copied());
            }
        }
        every_layer(&bytes);
    }
}

/// `every_layer` of `bytes` on a thread of its own, which must end within a
/// minute (on a busy machine too; the inputs take well under a second
/// here): a hang fails the test instead of stalling the suite.
fn every_layer_bounded(what: &str, bytes: Vec<u8>) {
    let (tx, rx) = std::sync::mpsc::channel();
    // The default stack, as a test's own thread has: no overflow either.
    std::thread::spawn(move || {
        every_layer(&bytes);
        let _ = tx.send(());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: ran over 60 s"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

#[test]
fn pathological_inputs_do_not_overflow_or_hang() {
    let deep_onbuild = "FROM a\n".to_string() + &"ONBUILD ".repeat(10_000) + "RUN x\n";
    every_layer_bounded("10,000 ONBUILDs", deep_onbuild.into_bytes());
    let deep_json = format!(
        "FROM a\nCMD {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    every_layer_bounded("JSON 100,000 deep", deep_json.into_bytes());
    let long_line = format!("FROM a\nRUN {}\n", "x \\\n".repeat(50_000));
    every_layer_bounded("50,000 continuations", long_line.into_bytes());
    let many_heredocs = format!("FROM a\nRUN {}\n", "<<E ".repeat(2_000));
    every_layer_bounded("2,000 heredocs", many_heredocs.into_bytes());
    let nested_vars = format!("{}{}", "${A:-".repeat(5_000), "}".repeat(5_000));
    every_layer_bounded("5,000 nested ${}", nested_vars.into_bytes());
}
