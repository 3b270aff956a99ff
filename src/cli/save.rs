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

/// Writes `images` to `output` as an archive: written aside, synced and
/// renamed into place, so that `output` is never half-written. An output
/// that exists and is not a regular file (`/dev/null`, a FIFO, a pipe) is
/// written straight into: renaming over it would replace the device.
pub(super) fn write_archive(
    store: &kiln::store::Store,
    images: &[(String, Image)],
    output: &std::path::Path,
    format: Format,
    compression: Compression,
) -> Result<(), Error> {
    let fail = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| Error::Read { path, source }
    };
    let save_into = |file: std::fs::File| -> Result<std::fs::File, Error> {
        let out = archive::save(
            store,
            images,
            std::io::BufWriter::new(file),
            format,
            compression,
        )?;
        out.into_inner().map_err(|e| Error::Write(e.into_error()))
    };
    if let Ok(meta) = std::fs::metadata(output)
        && !meta.is_file()
    {
        // Written into only when named as this process's own output or the
        // null device (`-o /dev/stdout` piped, `-o /dev/null`), or a FIFO
        // of the caller's own (checked again on what was opened): a FIFO
        // or a link to a device another user planted would get the image
        // or have root write it to hardware.
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let named = output == std::path::Path::new("/dev/null")
            || output == std::path::Path::new("/dev/stdout")
            || output == std::path::Path::new("/dev/stderr")
            || ["/dev/fd/", "/proc/self/fd/"]
                .iter()
                .any(|p| output.to_str().is_some_and(|o| o.starts_with(p)));
        let me = kiln::sandbox::fs::euid();
        let own_fifo = |m: &std::fs::Metadata| m.file_type().is_fifo() && m.uid() == me;
        let refuse = || {
            Error::Usage(format!(
                "{}: not a regular file: kiln writes an image only to a file, a pipe of yours, /dev/stdout or /dev/null; remove it or choose another path",
                output.display(),
            ))
        };
        if !named && !std::fs::symlink_metadata(output).is_ok_and(|m| own_fifo(&m)) {
            return Err(refuse());
        }
        let file = match named {
            true => std::fs::OpenOptions::new().write(true).open(output),
            false => kiln::sandbox::fs::open_write_nofollow(output),
        }
        .map_err(fail(output))?;
        if !named && !file.metadata().is_ok_and(|m| own_fifo(&m)) {
            return Err(refuse());
        }
        save_into(file)?;
        return Ok(());
    }
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    // Created exclusively (O_EXCL) under a random name: a name planted in
    // the directory beforehand, a symlink included, is never written through.
    let prefix = format!(
        ".{}.kiln-",
        output
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .tempfile_in(dir)
        .map_err(fail(dir))?;
    let file = save_into(tmp.reopen().map_err(fail(tmp.path()))?)?;
    file.sync_all().map_err(fail(tmp.path()))?;
    tmp.persist(output)
        .map_err(|e| e.error)
        .map_err(fail(output))?;
    Ok(())
}
