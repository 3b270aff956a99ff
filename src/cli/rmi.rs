//! `kiln rmi`: remove image names. Blobs and snapshots stay until `kiln
//! prune`, which removes what no name reaches.

use super::{Error, open_store};
use kiln::image::{Image, Name};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln rmi`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images: names, or ids (which remove every name of that image).
    #[arg(required = true)]
    images: Vec<String>,
}

/// Removes the names; prints `Untagged: name` for each.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let mut out = String::new();
    for reference in &args.images {
        let by_name = reference.parse::<Name>().ok().map(|n| n.to_string());
        if let Some(name) = by_name.as_ref()
            && store.untag(name)?.is_some()
        {
            out.push_str(&format!("Untagged: {name}\n"));
            continue;
        }
        let image = Image::resolve(&store, reference)?;
        for name in image.names(&store)? {
            store.untag(&name)?;
            out.push_str(&format!("Untagged: {name}\n"));
        }
        // An image without a name (`<none>`) is forgotten by its id.
        if store.forget_untagged(&image.entry_digest().to_string())? {
            store.image_event("delete", &image.id.to_string(), "");
            out.push_str(&format!("Deleted: {}\n", image.id));
        }
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
