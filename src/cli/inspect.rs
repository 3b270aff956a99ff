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
    /// Of a multi-platform image, this platform's (`linux/arm64`).
    #[arg(long)]
    platform: Option<String>,
    /// Print the image's SLSA provenance statement instead.
    #[arg(long, conflicts_with = "sbom")]
    provenance: bool,
    /// Print the image's SPDX SBOM statement instead.
    #[arg(long)]
    sbom: bool,
}

/// Prints a JSON array, one object per image, in `docker inspect`'s shape.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let platform = match &args.platform {
        Some(p) => Some(
            kiln::registry::Platform::from_user(p)
                .map_err(|e| Error::Usage(format!("--platform: {e}")))?,
        ),
        None => None,
    };
    let resolve = |r: &str| Image::resolve_for(&store, r, platform.as_ref());
    if args.provenance || args.sbom {
        let wanted = match args.provenance {
            true => kiln::attest::provenance::PREDICATE,
            false => kiln::attest::sbom::PREDICATE,
        };
        let mut out = Vec::new();
        for reference in &args.images {
            let image = resolve(reference)?;
            let found = kiln::attest::read(&store, &image)?
                .into_iter()
                .find(|(p, _)| p == wanted)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "{reference} ({}) has no {} attestation: build it with --{}",
                        image.platform(),
                        if args.provenance {
                            "provenance"
                        } else {
                            "SBOM"
                        },
                        if args.provenance {
                            "provenance=true"
                        } else {
                            "sbom=true"
                        },
                    ))
                })?;
            out.push(found.1);
        }
        let text = serde_json::to_string_pretty(&out).map_err(std::io::Error::other)? + "\n";
        std::io::stdout().lock().write_all(text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = Vec::new();
    for reference in &args.images {
        let image = match args.kind.as_deref() {
            Some("container") => None,
            Some(_) => Some(resolve(reference)?),
            None => match resolve(reference) {
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
