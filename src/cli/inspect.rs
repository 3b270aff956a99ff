//! `kiln inspect`: an image's config, layers and manifest, or a container's
//! record and state, as JSON in `docker inspect`'s shapes.

use super::{Error, open_store};
use kiln::image::Image;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images or containers: names or ids (an image first, as docker).
    #[arg(required = true)]
    images: Vec<String>,
    /// Only `image` or `container`.
    #[arg(long = "type", value_parser = ["image", "container"])]
    kind: Option<String>,
}

/// Prints a JSON array, one object per image, in `docker inspect`'s shape.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let mut out = Vec::new();
    for reference in &args.images {
        let image = match args.kind.as_deref() {
            Some("container") => None,
            Some(_) => Some(Image::resolve(&store, reference)?),
            None => match Image::resolve(&store, reference) {
                Ok(i) => Some(i),
                Err(e) => match kiln::container::find(&store, reference) {
                    Ok(_) => None,
                    Err(kiln::container::ContainerError::NotFound(_)) => return Err(e.into()),
                    Err(e) => return Err(super::container_error(e)),
                },
            },
        };
        let Some(image) = image else {
            let c = kiln::container::find(&store, reference).map_err(super::container_error)?;
            out.push(kiln::container::inspect::docker_json(&c));
            continue;
        };
        out.push(image.docker_json(&store)?);
    }
    let text = serde_json::to_string_pretty(&out).map_err(std::io::Error::other)? + "\n";
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
