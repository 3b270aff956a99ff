//! `kiln push`: an image from the store to a registry.

use super::{Error, open_store, runtime};
use kiln::image::Image;
use kiln::progress::Mode;
use kiln::registry::{self, Client, Options, Reference, Transfer};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln push`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image in the store (name or id).
    image: String,
    /// Where to push it [default: the image's name].
    reference: Option<String>,
    /// A registry that may be reached over plain HTTP (repeatable).
    #[arg(long = "insecure-registry")]
    insecure: Vec<String>,
    /// Print only the pushed manifest's digest.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// Pushes and prints the manifest's digest, as docker push does.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let image = Image::resolve(&store, &args.image)?;
    let target = args.reference.as_deref().unwrap_or(&args.image);
    let reference = Reference::parse(target).map_err(Error::Usage)?;
    if reference.digest.is_some() {
        return Err(Error::Usage(format!(
            "cannot push to {target}: a digest names content; push to a tag"
        )));
    }
    let mut opts = Options::from_env();
    opts.insecure.extend(args.insecure.iter().cloned());
    let mode = if args.quiet { Mode::Quiet } else { Mode::Auto };
    let transfers = Transfer::stderr(mode, "pushed");
    let pushed = runtime()?.block_on(async {
        let client = Client::connect(&reference.registry, &opts, None).await?;
        registry::push::push(&store, &client, &image, &reference, &transfers).await
    })?;
    drop(transfers);
    let digest = pushed.digest.map(|d| d.to_string()).unwrap_or_default();
    if args.quiet {
        writeln!(std::io::stdout(), "{digest}")?;
    } else {
        writeln!(
            std::io::stdout(),
            "{}: digest: {digest} size: {} ({} blobs sent, {} already there)",
            reference.manifest_ref(),
            pushed.size,
            pushed.uploaded,
            pushed.skipped
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
