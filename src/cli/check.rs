//! `kiln check` and `kiln build --check`: the typed layer and BuildKit's
//! lint rules over a Dockerfile, every problem reported, as text (with the
//! line shown) or as BuildKit's lint result JSON (`--format json`,
//! `--call=check,format=json`).

use super::diagnostic::{Located, Severity, color_stdout};
use super::{Error, read_dockerfile};
use base64::Engine as _;
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
    /// Set a build-time variable the checks see (BUILDKIT_DOCKERFILE_CHECK
    /// replaces the file's `# check=` directive).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    build_args: Vec<String>,
    /// Output: "text" (each problem with its line) or "json" (BuildKit's
    /// lint result: warnings, sources, buildError).
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    format: String,
    /// The build context: with it, COPY and ADD sources are checked against
    /// its .dockerignore (or <Dockerfile>.dockerignore).
    context: Option<PathBuf>,
}

/// What a check is asked for besides the file.
pub struct Request {
    /// The store whose images tell FROM's variables (UndefinedVar).
    pub root: Option<PathBuf>,
    /// Any finding (a warning too) fails, as `docker build --check` does.
    pub warnings_fail: bool,
}

/// Checks the file; exit 1 when there are errors, 0 when at most warnings.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    report(
        args,
        Request {
            root,
            warnings_fail: false,
        },
    )
}

/// `kiln build --check` (`--call=check[,format=json]`).
pub fn for_build(
    root: Option<PathBuf>,
    file: Option<PathBuf>,
    context: PathBuf,
    build_args: Vec<String>,
    json: bool,
) -> Result<ExitCode, Error> {
    report(
        Args {
            file,
            build_args,
            format: if json { "json" } else { "text" }.into(),
            context: Some(context),
        },
        Request {
            root,
            warnings_fail: true,
        },
    )
}

/// What one check found.
struct Checked {
    /// Errors of the parser and the typed layer.
    errors: Vec<dockerfile::Error>,
    findings: Vec<lint::Finding>,
    /// `error=true`: findings are errors.
    findings_are_errors: bool,
}

fn report(args: Args, request: Request) -> Result<ExitCode, Error> {
    let file = match (&args.file, &args.context) {
        (Some(file), _) => file.clone(),
        (None, Some(context)) => kiln::builder::default_dockerfile(context),
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
    let build_args: Vec<(String, String)> = args
        .build_args
        .iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.clone(), std::env::var(a).unwrap_or_default()),
        })
        .collect();
    let checked = check(&source, ignore.as_ref(), &build_args, request.root);
    let failed = !checked.errors.is_empty()
        || (checked.findings_are_errors || request.warnings_fail) && !checked.findings.is_empty();
    let out = match args.format.as_str() {
        "json" => json(&source, &bytes, &checked)?,
        _ => text(&source, &checked),
    };
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Every problem in `source`.
fn check(
    source: &Source,
    ignore: Option<&Matcher>,
    build_args: &[(String, String)],
    root: Option<PathBuf>,
) -> Checked {
    let ast = match dockerfile::parse(source) {
        Ok(ast) => ast,
        Err(e) => {
            return Checked {
                errors: vec![e],
                findings: Vec::new(),
                findings_are_errors: false,
            };
        }
    };
    let (_, mut errors) = instructions::typed(&ast);
    let arg = build_args
        .iter()
        .rev()
        .find(|(k, _)| k == "BUILDKIT_DOCKERFILE_CHECK")
        .map(|(_, v)| v.as_str());
    let config = match lint::Config::for_file(&ast, arg) {
        Ok(config) => config,
        Err(message) => {
            let span = ast
                .directives
                .iter()
                .find(|d| d.name == "check")
                .map_or(ast.nodes[0].span, |d| d.span);
            errors.push(dockerfile::Error::new(
                ErrorKind::Instruction(message),
                span,
            ));
            lint::Config::default()
        }
    };
    // The store's images tell what a FROM brings (nothing is pulled: a
    // base not there is not judged for UndefinedVar).
    let store = store_if_there(root);
    let base = |reference: &str| {
        let store = store.as_ref()?;
        let image = kiln::image::Image::resolve(store, reference).ok()?;
        Some(kiln::builder::base_facts(
            &image.config,
            &kiln::plan::host_platform(),
        ))
    };
    let ignored = ignore.map(|m| move |path: &str| m.lint_excludes(path));
    let findings = lint::lint_with(
        &ast,
        &lint::Inputs {
            ignored: ignored.as_ref().map(|f| f as &dyn Fn(&str) -> bool),
            base: Some(&base),
            build_args,
            stages: None,
            config: Some(config.clone()),
        },
    );
    Checked {
        errors,
        findings,
        findings_are_errors: config.error,
    }
}

/// The store at `root` (or the default one) when it exists already.
fn store_if_there(root: Option<PathBuf>) -> Option<kiln::store::Store> {
    let root =
        root.unwrap_or_else(|| kiln::store::Store::default_root(kiln::sandbox::fs::is_root()));
    kiln::store::layout::index(&root)
        .is_file()
        .then(|| kiln::store::Store::open(root).ok())
        .flatten()
}

fn text(source: &Source, checked: &Checked) -> String {
    let severity = if checked.findings_are_errors {
        Severity::Error
    } else {
        Severity::Warning
    };
    let mut problems: Vec<(usize, Located)> = checked
        .errors
        .iter()
        .map(|e| {
            (
                e.span.start,
                Located::with(source, e.clone(), Severity::Error, None),
            )
        })
        .collect();
    for finding in &checked.findings {
        let rule = finding.rule();
        let mut err = dockerfile::Error::new(
            ErrorKind::Instruction(finding.message.clone()),
            finding.span,
        );
        if !rule.url.is_empty() {
            err = err.with_hint(format!("{} ({})", rule.description, rule.url));
        }
        problems.push((
            finding.span.start,
            Located::with(source, err, severity, Some(finding.rule.to_string())),
        ));
    }
    problems.sort_by_key(|(at, _)| *at);
    let color = color_stdout();
    let mut out = String::new();
    for (_, problem) in &problems {
        out.push_str(&problem.render(color));
        out.push('\n');
    }
    let errors = checked.errors.len()
        + if checked.findings_are_errors {
            checked.findings.len()
        } else {
            0
        };
    out.push_str(&summary(&source.name, errors, problems.len() - errors));
    out
}

/// BuildKit's lint result (frontend/subrequests/lint): the warnings with
/// rule, description, URL, detail and line range; the source; the error
/// that ends the build, if one does.
fn json(source: &Source, bytes: &[u8], checked: &Checked) -> Result<String, Error> {
    let range = |start: usize, end: usize| serde_json::json!({ "start": { "line": start }, "end": { "line": end } });
    let warnings: Vec<serde_json::Value> = checked
        .findings
        .iter()
        .map(|f| {
            let rule = f.rule();
            let mut w = serde_json::json!({
                "ruleName": f.rule,
                "description": rule.description,
                "detail": f.message,
                "location": { "sourceIndex": 0, "ranges": [range(f.line, f.end_line)] },
            });
            if !rule.url.is_empty() {
                w["url"] = rule.url.into();
            }
            w
        })
        .collect();
    let error = if let Some(e) = checked.errors.first() {
        let line = source.position(e.span.start).line;
        Some((e.to_string(), line, source.position(e.span.end).line))
    } else if checked.findings_are_errors && !checked.findings.is_empty() {
        let mut rules: Vec<&str> = checked.findings.iter().map(|f| f.rule).collect();
        rules.sort_unstable();
        rules.dedup();
        let first = &checked.findings[0];
        Some((
            format!("lint violation found for rules: {}", rules.join(", ")),
            first.line,
            first.end_line,
        ))
    } else {
        None
    };
    let mut result = serde_json::json!({
        "warnings": warnings,
        "sources": [{
            "filename": source.name,
            "language": "Dockerfile",
            "data": base64::engine::general_purpose::STANDARD.encode(bytes),
        }],
    });
    if let Some((message, start, end)) = error {
        result["buildError"] = serde_json::json!({
            "message": message,
            "location": { "sourceIndex": 0, "ranges": [range(start, end)] },
        });
    }
    let mut out = serde_json::to_string_pretty(&result)
        .map_err(|e| Error::Write(std::io::Error::other(e)))?;
    out.push('\n');
    Ok(out)
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
