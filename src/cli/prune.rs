//! `kiln prune`: remove what no image name reaches; trim the build cache.

use super::{Error, format, open_store};
use kiln::image::prune::prune;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln prune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trim the build cache, least recently used first, to this size (`10GB`, `512MB`).
    #[arg(long, value_parser = kiln::units::human_size)]
    keep_storage: Option<u64>,
}

/// Prunes, and says what it freed.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    // Containers' layers stay: a running one has them mounted, a stopped
    // one starts from them again.
    let in_use = kiln::container::snapshots_in_use(&store);
    // Images without a name no container was made from go first.
    let used = kiln::container::list(&store)
        .map_err(super::container_error)?
        .into_iter()
        .map(|c| c.record.image_id)
        .collect();
    kiln::image::prune::forget_dangling(&store, &used)?;
    let Some(p) = prune(&store, args.keep_storage, &in_use)? else {
        return Err(Error::Busy(store.root().to_path_buf()));
    };
    let text = format!(
        "Deleted {} blobs, {} snapshots, {} cache records\nTotal reclaimed space: {}\n",
        p.blobs,
        p.snapshots,
        p.cache_records,
        format::size(p.bytes)
    );
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
