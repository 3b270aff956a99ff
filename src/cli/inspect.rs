//! `kiln inspect`: an image's config, layers and manifest, as JSON.

use super::{Error, open_store};
use kiln::image::Image;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images: names or ids.
    #[arg(required = true)]
    images: Vec<String>,
}

/// Prints a JSON array, one object per image, in `docker inspect`'s shape.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let mut out = Vec::new();
    for reference in &args.images {
        let image = Image::resolve(&store, reference)?;
        let c = &image.config;
        out.push(serde_json::json!({
            "Id": image.id.to_string(),
            "RepoTags": image.names(&store)?,
            "Created": c.created,
            "Author": c.author.clone().unwrap_or_default(),
            "Architecture": c.architecture,
            "Os": c.os,
            "Variant": c.variant,
            "Config": c.config,
            "RootFS": { "Type": c.rootfs.kind, "Layers": c.rootfs.diff_ids },
            "History": c.history,
            "Size": image.size(),
            "Manifest": {
                "Digest": image.manifest_digest.to_string(),
                "Layers": image.manifest.layers(),
            },
        }));
    }
    let text = serde_json::to_string_pretty(&out).map_err(std::io::Error::other)? + "\n";
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
