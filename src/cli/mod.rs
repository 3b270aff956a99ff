//! Subcommands: one file each. Arguments become validated options here, and
//! reports are rendered here; the library does the work.

mod check;
mod diagnostic;
mod parse;

use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use diagnostic::color_stderr;

/// kiln: a daemonless container image builder.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a Dockerfile's syntax tree (BuildKit's parser-test notation, or JSON).
    Parse(parse::Args),
    /// Check a Dockerfile: every instruction, flag and argument, and lint rules.
    Check(check::Args),
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Parse(args) => parse::run(args),
        Command::Check(args) => check::run(args),
    }
}

/// Everything a subcommand can fail with; rendered once, in main.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the output failed (a closed pipe counts as success).
    #[error("writing output: {0}")]
    Write(#[from] std::io::Error),
    /// The Dockerfile is not valid.
    #[error("{}", .0.kind)]
    Dockerfile(Box<diagnostic::Located>),
    /// The context's ignore file could not be used.
    #[error(transparent)]
    Ignore(#[from] kiln::context::ignore::IgnoreError),
}

impl Error {
    /// The process exit code: 1 for a bad input, 2 for kiln's own trouble.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Read { .. } | Error::Dockerfile(_) | Error::Ignore(_) => 1,
            Error::Write(_) => 2,
        }
    }

    /// True for a write to a pipe whose reader went away (`kiln parse | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Write(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// The error as a person reads it.
    pub fn render(&self, color: bool) -> String {
        match self {
            Error::Dockerfile(located) => located.render(color),
            Error::Read { path, source } => {
                let hint = if source.kind() == std::io::ErrorKind::NotFound {
                    "\n  help: pass the Dockerfile's path with -f, or - to read standard input\n"
                } else {
                    "\n"
                };
                format!("error: cannot read {}: {source}{hint}", path.display())
            }
            other => format!("error: {other}\n"),
        }
    }
}

/// Reads the Dockerfile named by `-f` (`-` for standard input).
fn read_dockerfile(path: &Path) -> Result<(String, Vec<u8>), Error> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|source| Error::Read {
                path: path.into(),
                source,
            })?;
        return Ok(("<stdin>".into(), bytes));
    }
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.into(),
        source,
    })?;
    Ok((path.display().to_string(), bytes))
}
