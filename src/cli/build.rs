//! `kiln build`: a Dockerfile and its context into an image in the store.

use super::diagnostic::{Located, Severity};
use super::{Error, open_store, read_dockerfile};
use kiln::build::{self, BuildError, Options, Secret};
use kiln::dockerfile::Source;
use kiln::image::Name;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The build context.
    context: PathBuf,
    /// The Dockerfile [default: CONTEXT/Dockerfile]; `-` reads standard input.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Name the result (repeatable).
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// `KEY=value`, or `KEY` to take it from the environment (repeatable).
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Build up to this stage.
    #[arg(long)]
    target: Option<String>,
    /// Run every step, ignoring the cache.
    #[arg(long)]
    no_cache: bool,
    /// A secret for `RUN --mount=type=secret`: `id=X,src=FILE` or
    /// `id=X,env=VAR` (`id=X` alone reads the variable X); repeatable.
    #[arg(long = "secret", value_parser = parse_secret)]
    secrets: Vec<(String, Secret)>,
    /// Write the image id to this file.
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Print only the image id.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// Parses `--secret id=X[,src=FILE|,env=VAR]` (also `type=file|env`).
fn parse_secret(text: &str) -> Result<(String, Secret), String> {
    let (mut id, mut src, mut env) = (None, None, None);
    for field in text.split(',') {
        match field.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
            Some(("env", v)) => env = Some(v.to_string()),
            Some(("type", "file" | "env")) => {}
            _ => {
                return Err(format!(
                    "invalid secret {text:?}: use id=NAME,src=FILE or id=NAME,env=VAR"
                ));
            }
        }
    }
    let id = id.ok_or_else(|| format!("invalid secret {text:?}: id=NAME is required"))?;
    let secret = match (src, env) {
        (Some(path), _) => Secret::File(path),
        (None, Some(var)) => Secret::Env(var),
        (None, None) => Secret::Env(id.clone()),
    };
    Ok((id, secret))
}

/// Builds and prints the image id.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let mut tags = Vec::new();
    for t in &args.tags {
        tags.push(t.parse::<Name>().map_err(Error::Usage)?);
    }
    let mut build_args = Vec::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => build_args.push((k.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.push((a.clone(), v));
                }
            }
        }
    }
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let (name, bytes) = read_dockerfile(&file)?;
    let source = Source::new(name, &bytes);
    let store = open_store(root)?;
    let opts = Options {
        context: args.context.clone(),
        dockerfile: (file.as_os_str() != "-").then_some(file),
        tags,
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        secrets: args.secrets.clone(),
    };
    let mut progress: Box<dyn Write> = if args.quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stderr())
    };
    match build::build(&store, &source, &opts, &mut progress) {
        Ok(image) => {
            if let Some(path) = &args.iidfile {
                std::fs::write(path, image.id.to_string()).map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?;
            }
            writeln!(std::io::stdout(), "{}", image.id)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(BuildError::Dockerfile(errors)) => {
            let mut out = String::new();
            for e in errors {
                out.push_str(
                    &Located::with(&source, e, Severity::Error, None).render(super::color_stderr()),
                );
            }
            std::io::stderr().write_all(out.as_bytes())?;
            Ok(ExitCode::FAILURE)
        }
        Err(BuildError::Step { error, .. }) => {
            let text =
                Located::with(&source, error, Severity::Error, None).render(super::color_stderr());
            std::io::stderr().write_all(text.as_bytes())?;
            Ok(ExitCode::FAILURE)
        }
        Err(BuildError::Store(e)) => Err(e.into()),
        Err(BuildError::Image(e)) => Err(e.into()),
    }
}
