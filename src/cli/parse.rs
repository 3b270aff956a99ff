//! `kiln parse`: the syntax tree of a Dockerfile.

use super::{Error, diagnostic::Located, read_dockerfile};
use kiln::dockerfile::{self, Source, dump::dump};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln parse`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Dockerfile to read; `-` reads standard input.
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    file: PathBuf,
    /// Print JSON (`{"directives": {...}, "instructions": [...]}`) instead of the dump.
    #[arg(long)]
    json: bool,
}

/// Parses the file and prints its tree.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    let (name, bytes) = read_dockerfile(&args.file)?;
    let source = Source::new(name, &bytes);
    let ast = dockerfile::parse(&source).map_err(|e| Located::new(&source, e))?;
    let out = if args.json {
        let mut text = serde_json::to_string_pretty(&dockerfile::json::to_json(&ast, &source))
            .map_err(std::io::Error::other)?;
        text.push('\n');
        text
    } else {
        dump(&ast)
    };
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
