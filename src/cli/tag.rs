//! `kiln tag`: another name for an image.

use super::{Error, open_store};
use kiln::image::{Image, Name};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln tag`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image: a name or an id.
    source: String,
    /// The new name, `repository[:tag]`.
    target: String,
}

/// Points the new name at the image.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let target: Name = args.target.parse().map_err(Error::Usage)?;
    let store = open_store(root)?;
    let image = Image::resolve(&store, &args.source)?;
    store.tag(&target.to_string(), image.descriptor(&store))?;
    store.image_event("tag", &image.id.to_string(), &target.to_string());
    Ok(ExitCode::SUCCESS)
}
