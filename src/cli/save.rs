//! `kiln save`: images to an OCI archive or a docker-archive file.

use super::{Error, open_store};
use kiln::image::archive::{self, Format};
use kiln::image::{Image, Name};
use kiln::layer::Compression;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln save`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images: names or ids.
    #[arg(required = true)]
    images: Vec<String>,
    /// The archive to write (written aside and renamed: never half-written).
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// `oci` (an OCI layout, as skopeo's oci-archive) or `docker` (for `docker load`).
    #[arg(long, default_value = "oci", value_parser = ["oci", "docker"])]
    format: String,
    /// How layers stored uncompressed are compressed on the way out.
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "none"])]
    compression: String,
    /// Of a multi-platform image, only this platform's (`linux/arm64`):
    /// the one image docker 20.10's `load` takes. Without it an OCI
    /// archive holds the whole index, a docker archive this machine's.
    #[arg(long)]
    platform: Option<String>,
}

/// Writes the archive.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let mut images = Vec::new();
    let platform = match &args.platform {
        Some(p) => Some(
            kiln::registry::Platform::from_user(p)
                .map_err(|e| Error::Usage(format!("--platform: {e}")))?,
        ),
        None => None,
    };
    for reference in &args.images {
        let mut image = Image::resolve_for(&store, reference, platform.as_ref())?;
        let name = match reference.parse::<Name>() {
            Ok(n) if image.names(&store)?.contains(&n.to_string()) => n.to_string(),
            _ => image
                .names(&store)?
                .into_iter()
                .next()
                .unwrap_or_else(|| image.id.to_string()),
        };
        if let Some(p) = &platform {
            // One platform: the image alone, its index left out.
            if image.index.take().is_none() && image.platform() != p.to_string() {
                return Err(Error::Usage(format!(
                    "--platform {p}: {reference} is an image for {} only",
                    image.platform()
                )));
            }
        }
        images.push((name, image));
    }
    let format = if args.format == "docker" {
        Format::Docker
    } else {
        Format::Oci
    };
    let compression = match args.compression.as_str() {
        "zstd" => Compression::Zstd,
        "none" => Compression::None,
        _ => Compression::Gzip,
    };
    write_archive(&store, &images, &args.output, format, compression)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `images` as one archive to `output` (see
/// [`kiln::image::archive::save_to`]: atomic, and never through a planted
/// FIFO or device).
pub(super) fn write_archive(
    store: &kiln::store::Store,
    images: &[(String, Image)],
    output: &std::path::Path,
    format: Format,
    compression: Compression,
) -> Result<(), Error> {
    Ok(archive::save_to(
        store,
        images,
        output,
        format,
        compression,
    )?)
}
