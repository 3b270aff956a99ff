//! `kiln pull`: an image from a registry into the store.

use super::{Error, open_store, runtime};
use kiln::progress::Mode;
use kiln::registry::{self, Options, Platform, Reference, Transfer};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln pull`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image: `debian:bookworm`, `host:port/team/app:1`, `name@sha256:...`.
    reference: String,
    /// The platform to take from a multi-platform image [default: this machine's].
    #[arg(long, value_parser = Platform::parse)]
    platform: Option<Platform>,
    /// Every platform of a multi-platform image, kept as its index.
    #[arg(long = "all-platforms", conflicts_with = "platform")]
    all_platforms: bool,
    /// A registry that may be reached over plain HTTP (repeatable).
    #[arg(long = "insecure-registry")]
    insecure: Vec<String>,
    /// Print only the image id.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// Pulls and prints the local name and image id.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let reference = Reference::parse(&args.reference).map_err(Error::Usage)?;
    let store = open_store(root)?;
    let mut opts = Options::from_env();
    opts.insecure.extend(args.insecure.iter().cloned());
    let platform = args.platform.clone().unwrap_or_else(Platform::host);
    let mode = if args.quiet { Mode::Quiet } else { Mode::Auto };
    let transfers = Transfer::stderr(mode, "pulled");
    let image = runtime()?.block_on(async {
        match args.all_platforms {
            true => {
                let client = registry::Client::connect(&reference.registry, &opts, None).await?;
                registry::pull::pull_all(&store, &client, &reference, &transfers).await
            }
            false => {
                registry::pull::pull_via_mirrors(&store, &opts, &reference, &platform, &transfers)
                    .await
            }
        }
    })?;
    drop(transfers);
    let mut out = std::io::stdout();
    if !args.quiet {
        writeln!(
            std::io::stderr(),
            "{}: {}",
            reference.local_name(),
            image.entry_digest()
        )?;
    }
    writeln!(out, "{}", image.id)?;
    Ok(ExitCode::SUCCESS)
}
