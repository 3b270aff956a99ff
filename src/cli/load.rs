//! `kiln load`: images from an OCI archive or docker-archive (plain, gzip or zstd).

use super::{Error, open_store};
use kiln::image::archive;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln load`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive; standard input when absent.
    #[arg(short = 'i', long = "input")]
    input: Option<PathBuf>,
}

/// Loads the archive; prints `Loaded image: name` (or `Loaded image ID: id`).
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let loaded = match &args.input {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            archive::load(&store, file)?
        }
        None => archive::load(&store, std::io::stdin().lock())?,
    };
    let mut out = String::new();
    for name in &loaded.names {
        out.push_str(&format!("Loaded image: {name}\n"));
    }
    for id in &loaded.untagged {
        out.push_str(&format!("Loaded image ID: {id}\n"));
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
