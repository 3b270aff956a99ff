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
    /// The platform the root filesystem is for (`linux/arm64`); this
    /// machine's by default.
    #[arg(long)]
    platform: Option<String>,
}

/// Imports the tarball and prints the image id.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let name: Name = args.name.parse().map_err(Error::Usage)?;
    let platform = match args.platform.as_deref() {
        Some(p) => kiln::plan::normalize_platform(p)
            .map_err(|e| Error::Usage(format!("--platform: {e}")))?,
        None => kiln::plan::host_platform(),
    };
    let store = open_store(root)?;
    let source = args.file.display().to_string();
    let image = if args.file.as_os_str() == "-" {
        image::import_for(
            &store,
            std::io::stdin().lock(),
            "-",
            &name,
            &args.changes,
            &platform,
            super::env_epoch(),
        )?
    } else {
        let file = std::fs::File::open(&args.file).map_err(|source| Error::Read {
            path: args.file.clone(),
            source,
        })?;
        image::import_for(
            &store,
            file,
            &source,
            &name,
            &args.changes,
            &platform,
            super::env_epoch(),
        )?
    };
    writeln!(std::io::stdout(), "{}", image.id)?;
    Ok(ExitCode::SUCCESS)
}
