//! Where each thing lives under a store's root: the one list of the
//! layout's paths beside the OCI layout's own (`index.json`, `blobs/`),
//! for code that has a store open (`Store`'s sub-stores use it) and for
//! the processes that only know its root (a container's monitor, the
//! rootless network helper, the event journal). Names that come from
//! outside are checked before they become a path.

use super::{Result, StoreError};
use std::path::{Path, PathBuf};

/// The OCI layout's index: its presence makes a directory a store.
pub fn index(root: &Path) -> PathBuf {
    root.join("index.json")
}

/// The containers' directories.
pub fn containers(root: &Path) -> PathBuf {
    root.join("containers")
}

/// Container `id`'s directory (one plain name).
pub fn container(root: &Path, id: &str) -> Result<PathBuf> {
    one_component(id)?;
    Ok(containers(root).join(id))
}

/// The volumes' directories.
pub fn volumes(root: &Path) -> PathBuf {
    root.join("volumes")
}

/// Volume `name`'s directory (one plain name).
pub fn volume(root: &Path, name: &str) -> Result<PathBuf> {
    one_component(name)?;
    Ok(volumes(root).join(name))
}

/// The networks' records, and the rootless helper's files beside them.
pub fn networks(root: &Path) -> PathBuf {
    root.join("networks")
}

/// The build step logs, a directory per build.
pub fn logs(root: &Path) -> PathBuf {
    root.join("logs")
}

/// `kiln serve`'s state (its database, git checkouts).
pub fn serve(root: &Path) -> PathBuf {
    root.join("serve")
}

/// Where `kiln serve` checks out git target `name` (names are checked
/// when its config is read; checked again here).
pub fn serve_checkout(root: &Path, name: &str) -> Result<PathBuf> {
    one_component(name)?;
    Ok(serve(root).join("git").join(name))
}

/// The event journal (`events.log`), its rotated predecessor
/// (`events.log.1`) and the lock its rotation takes.
pub fn events(root: &Path) -> [PathBuf; 3] {
    [
        root.join("events.log"),
        root.join("events.log.1"),
        root.join("events.lock"),
    ]
}

/// The caches under `cache/`, by what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// Step records (`store::steps`).
    Steps,
    /// `RUN --mount=type=cache` directories.
    Mounts,
    /// Compressed copies of layers, by diffID (`image::compress`).
    Compressed,
    /// Images whose layers were verified against their diffIDs.
    Verified,
    /// Where each pulled image came from (`registry::pull`).
    Origins,
    /// The inputs of each step's last key, for `--explain`.
    Explain,
    /// The stat caches of build contexts.
    Context,
}

/// Where cache `kind` lives.
pub fn cache(root: &Path, kind: Cache) -> PathBuf {
    root.join("cache").join(match kind {
        Cache::Steps => "steps",
        Cache::Mounts => "mounts",
        Cache::Compressed => "compressed",
        Cache::Verified => "verified",
        Cache::Origins => "origins",
        Cache::Explain => "explain",
        Cache::Context => "context",
    })
}

/// Refuses a name that is not one plain path component.
pub(super) fn one_component(name: &str) -> Result<()> {
    match name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        true => Err(StoreError::BadName(name.to_string())),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_outside_stay_one_component() {
        let root = Path::new("/s");
        assert_eq!(
            container(root, "abc").unwrap(),
            Path::new("/s/containers/abc")
        );
        assert_eq!(
            serve_checkout(root, "app").unwrap(),
            Path::new("/s/serve/git/app")
        );
        for bad in ["", ".", "..", "a/b", "../x", "a\0b"] {
            assert!(container(root, bad).is_err(), "{bad:?}");
            assert!(volume(root, bad).is_err(), "{bad:?}");
            assert!(serve_checkout(root, bad).is_err(), "{bad:?}");
        }
    }
}
