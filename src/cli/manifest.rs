//! `kiln manifest`: multi-platform images made of images in the store, as
//! `podman manifest` makes them (`kiln push` sends one as it is).

use super::{Error, open_store};
use kiln::image::{Image, Name, index};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln manifest`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Name an image index of images (each with its platform; a
    /// multi-platform image gives every one of its images).
    Create {
        /// The index's name.
        list: String,
        /// The images: names or ids.
        images: Vec<String>,
    },
    /// Add an image to an index (replacing the image of its platform).
    Add {
        /// The index's name.
        list: String,
        /// The image: a name or an id.
        image: String,
    },
    /// Print an index as stored.
    Inspect {
        /// The index's name.
        list: String,
    },
}

/// Runs the subcommand.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    // Every image of `reference`: its index's, or itself.
    let images_of =
        |reference: &str| -> Result<(Vec<Image>, Vec<oci_spec::image::Descriptor>), Error> {
            let image = Image::resolve(&store, reference)?;
            let Some(digest) = &image.index else {
                return Ok((vec![image], Vec::new()));
            };
            let list = index::read(&store, digest)?;
            let mut images = Vec::new();
            for d in index::images(&list) {
                images.push(Image::load(&store, &kiln::image::manifest_digest(d)?)?);
            }
            let attestations = list
                .manifests()
                .iter()
                .filter(|d| index::is_attestation(d))
                .cloned()
                .collect();
            Ok((images, attestations))
        };
    let (name, images, attestations) = match &args.command {
        Command::Inspect { list } => {
            let image = Image::resolve(&store, list)?;
            let Some(digest) = &image.index else {
                return Err(Error::Usage(format!(
                    "{list} is an image of one platform ({}), not an index: kiln inspect shows it",
                    image.platform()
                )));
            };
            let bytes = store.read_blob(digest)?;
            let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Image(kiln::image::ImageError::Json("attestation manifest", e))
            })?;
            let text = serde_json::to_string_pretty(&value).map_err(std::io::Error::other)? + "\n";
            std::io::stdout().lock().write_all(text.as_bytes())?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Create { list, images: refs } => {
            let (mut images, mut attestations) = (Vec::new(), Vec::new());
            for r in refs {
                let (i, a) = images_of(r)?;
                images.extend(i);
                attestations.extend(a);
            }
            (list, images, attestations)
        }
        Command::Add { list, image } => {
            let (mut images, mut attestations) = images_of(list)?;
            let (i, a) = images_of(image)?;
            images.extend(i);
            attestations.extend(a);
            (list, images, attestations)
        }
    };
    let name: Name = name.parse().map_err(Error::Usage)?;
    if images.is_empty() {
        return Err(Error::Usage(format!(
            "kiln manifest create {name}: name the images it holds (kiln manifest create {name} IMAGE...)"
        )));
    }
    let written = index::of_images(&store, &images, attestations)?;
    // Read back before it is named: a name never points at what cannot load.
    let image = Image::load(&store, &kiln::image::manifest_digest(&written)?)?;
    store.tag(&name.to_string(), written.clone())?;
    store.image_event("tag", &image.id.to_string(), &name.to_string());
    writeln!(std::io::stdout(), "{}", written.digest())?;
    Ok(ExitCode::SUCCESS)
}
