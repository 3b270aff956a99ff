//! `kiln check`: the typed layer and the lint rules over a Dockerfile, every
//! problem reported (as `docker build --check` does).

use super::diagnostic::{Located, Severity, color_stdout};
use super::{Error, read_dockerfile};
use kiln::context::ignore::Matcher;
use kiln::dockerfile::{self, ErrorKind, Source, instructions, lint};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Dockerfile to check; `-` reads standard input
    /// [default: CONTEXT/Dockerfile, or ./Dockerfile without a context].
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// The build context: with it, COPY and ADD sources are checked against
    /// its .dockerignore (or <Dockerfile>.dockerignore).
    context: Option<PathBuf>,
}

/// Checks the file; exit 1 when there are errors, 0 when at most warnings.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    report(args, false)
}

/// `kiln build --check`: as `docker build --check`, any finding (a
/// warning too) makes the exit status 1.
pub fn for_build(file: Option<PathBuf>, context: PathBuf) -> Result<ExitCode, Error> {
    report(
        Args {
            file,
            context: Some(context),
        },
        true,
    )
}

fn report(args: Args, warnings_fail: bool) -> Result<ExitCode, Error> {
    let file = match (&args.file, &args.context) {
        (Some(file), _) => file.clone(),
        (None, Some(context)) => kiln::build::default_dockerfile(context),
        (None, None) => PathBuf::from("Dockerfile"),
    };
    let (name, bytes) = read_dockerfile(&file)?;
    let source = Source::new(name, &bytes);
    let ignore = match &args.context {
        Some(context) => {
            let dockerfile = (file.as_os_str() != "-").then_some(file.as_path());
            Some(Matcher::for_build(context, dockerfile)?)
        }
        None => None,
    };
    let problems = check(&source, ignore.as_ref());
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = problems.len() - errors;
    let color = color_stdout();
    let mut out = String::new();
    for problem in &problems {
        out.push_str(&problem.render(color));
        out.push('\n');
    }
    out.push_str(&summary(&source.name, errors, warnings));
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(if errors > 0 || warnings_fail && warnings > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Every problem in `source`, in source order.
fn check(source: &Source, ignore: Option<&Matcher>) -> Vec<Located> {
    let ast = match dockerfile::parse(source) {
        Ok(ast) => ast,
        Err(e) => return vec![Located::with(source, e, Severity::Error, None)],
    };
    let (_, errors) = instructions::typed(&ast);
    let config = lint::Config::of(&ast);
    let lint_severity = if config.error {
        Severity::Error
    } else {
        Severity::Warning
    };
    let mut problems: Vec<(usize, Located)> = errors
        .into_iter()
        .map(|e| {
            (
                e.span.start,
                Located::with(source, e, Severity::Error, None),
            )
        })
        .collect();
    let ignored = ignore.map(|m| move |path: &str| m.is_ignored(path));
    let ignored = ignored.as_ref().map(|f| f as &dyn Fn(&str) -> bool);
    for finding in lint::lint_with_context(&ast, ignored) {
        let err = dockerfile::Error::new(ErrorKind::Instruction(finding.message), finding.span);
        problems.push((
            finding.span.start,
            Located::with(source, err, lint_severity, Some(finding.rule.to_string())),
        ));
    }
    problems.sort_by_key(|(at, _)| *at);
    problems.into_iter().map(|(_, p)| p).collect()
}

fn summary(name: &str, errors: usize, warnings: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if errors + warnings == 0 {
        format!("{name}: no problems found\n")
    } else {
        format!(
            "{name}: {}, {}\n",
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    }
}
