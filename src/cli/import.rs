//! `kiln import`: a root filesystem tarball becomes an image (like `docker import`).

use super::{Error, open_store};
use kiln::image::{self, Name};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The tarball: plain, gzip or zstd (detected from its content); `-` reads standard input.
    file: PathBuf,
    /// The image name, `repository[:tag]`.
    name: String,
    /// A Dockerfile instruction applied to the config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR, ...); repeatable.
    #[arg(short = 'c', long = "change")]
    changes: Vec<String>,
}

/// Imports the tarball and prints the image id.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let name: Name = args.name.parse().map_err(Error::Usage)?;
    let store = open_store(root)?;
    let source = args.file.display().to_string();
    let image = if args.file.as_os_str() == "-" {
        image::import(&store, std::io::stdin().lock(), "-", &name, &args.changes)?
    } else {
        let file = std::fs::File::open(&args.file).map_err(|source| Error::Read {
            path: args.file.clone(),
            source,
        })?;
        image::import(&store, file, &source, &name, &args.changes)?
    };
    writeln!(std::io::stdout(), "{}", image.id)?;
    Ok(ExitCode::SUCCESS)
}
