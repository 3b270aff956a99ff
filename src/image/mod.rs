//! Images in the store: config + manifest + layers, and the ways in and out
//! (`import`, and OCI / docker archives in [`archive`]).

pub mod archive;
mod changes;
pub mod compress;
pub mod config;
pub mod index;
pub mod prune;
pub mod reference;

pub use changes::{apply_changes, apply_with, exposed};
pub use config::{ContainerConfig, History, ImageConfig, RootFs};
pub use reference::Name;

use crate::layer::{self, ApplyError};
use crate::store::{Digest, Store, StoreError};
use oci_spec::image::{Descriptor, ImageManifest, MediaType};
use std::io::{self, Read, Write};
use thiserror::Error;

/// The OCI media type of an uncompressed layer.
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// What can go wrong with images.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer could not be unpacked.
    #[error(transparent)]
    Layer(#[from] ApplyError),
    /// Reading the input failed.
    #[error("reading {what}: {source}")]
    Read {
        /// What was being read.
        what: String,
        /// Why.
        source: io::Error,
    },
    /// Writing an output failed.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// Where.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
    /// No image by that name or id.
    #[error("no such image: {0}")]
    NotFound(String),
    /// An id prefix that matches several images.
    #[error("image id prefix {0} matches several images")]
    Ambiguous(String),
    /// A name that is not a valid image name.
    #[error("{0}")]
    BadName(String),
    /// A `--change` that is not a valid instruction.
    #[error("invalid change {change:?}: {reason}")]
    BadChange {
        /// The change as given.
        change: String,
        /// What is wrong.
        reason: String,
    },
    /// An archive that is not what it claims to be.
    #[error("{0}")]
    BadArchive(String),
    /// Writing an output (an archive) failed.
    #[error("writing {what}: {source}")]
    Output {
        /// What was being written.
        what: String,
        /// Why.
        source: io::Error,
    },
    /// An output path kiln will not write an image to (a device, a FIFO
    /// another user planted).
    #[error("{}: not a regular file: kiln writes an image only to a file, a pipe of yours, /dev/stdout or /dev/null; remove it or choose another path", .0.display())]
    NotAFile(std::path::PathBuf),
    /// Encoding JSON failed.
    #[error("encoding {0}: {1}")]
    Json(&'static str, serde_json::Error),
    /// A multi-platform image without the platform asked for.
    #[error("{image} has no image for {platform} (it has {available})")]
    NoPlatform {
        /// The image as named.
        image: String,
        /// The platform asked for.
        platform: String,
        /// The platforms it has.
        available: String,
    },
}

/// Shorthand for results of this module.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// An image in the store.
#[derive(Clone, Debug)]
pub struct Image {
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config's digest: the image id, as Docker shows it.
    pub id: Digest,
    /// The config.
    pub config: ImageConfig,
    /// The index it was chosen from, when its name names a multi-platform
    /// image: what a tag, a save or a push of it carries along.
    pub index: Option<Digest>,
}

impl Image {
    /// Reads the image an index entry names: a manifest, or an index's
    /// image for this machine (else its first; see [`index::choose`]).
    pub fn load(store: &Store, entry: &Digest) -> Result<Image> {
        Image::load_for(store, entry, None)
    }

    /// [`Image::load`] of `platform`'s image when `entry` is an index; a
    /// one-platform image is returned whatever its platform (callers that
    /// care compare).
    pub fn load_for(
        store: &Store,
        entry: &Digest,
        platform: Option<&crate::registry::Platform>,
    ) -> Result<Image> {
        let bytes = index::read_small(store, entry)?;
        if !index::is_index_json(&bytes) {
            return Image::from_manifest(store, entry, &bytes);
        }
        let list: oci_spec::image::ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::BadArchive(format!("index {entry}: {e}")))?;
        let child = index::choose(&list, platform).ok_or_else(|| ImageError::NoPlatform {
            image: entry.to_string(),
            platform: platform.map_or_else(|| "any platform".to_string(), |p| p.to_string()),
            available: index::images(&list)
                .iter()
                .filter_map(|d| index::platform_of(d))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let mut image = Image::load_manifest(store, &manifest_digest(child)?)?;
        image.index = Some(entry.clone());
        Ok(image)
    }

    /// The platforms of the image's name: each of its index's images', or
    /// its own.
    pub fn platforms(&self, store: &Store) -> Result<Vec<String>> {
        match &self.index {
            Some(digest) => Ok(index::images(&index::read(store, digest)?)
                .iter()
                .filter_map(|d| index::platform_of(d))
                .collect()),
            None => Ok(vec![self.platform()]),
        }
    }

    /// This image's platform, `os/arch[/variant]`.
    pub fn platform(&self) -> String {
        let c = &self.config;
        match &c.variant {
            Some(v) => format!("{}/{}/{v}", c.os, c.architecture),
            None => format!("{}/{}", c.os, c.architecture),
        }
    }

    /// The digest the store's index names: the image index's when the
    /// image came from one, else the manifest's.
    pub fn entry_digest(&self) -> &Digest {
        self.index.as_ref().unwrap_or(&self.manifest_digest)
    }

    fn load_manifest(store: &Store, manifest: &Digest) -> Result<Image> {
        let bytes = index::read_small(store, manifest)?;
        Image::from_manifest(store, manifest, &bytes)
    }

    /// The image of manifest `manifest`, whose bytes are `bytes`.
    fn from_manifest(store: &Store, manifest: &Digest, bytes: &[u8]) -> Result<Image> {
        let m: ImageManifest = serde_json::from_slice(bytes).map_err(|source| {
            ImageError::Store(StoreError::Json {
                what: "manifest",
                path: store.blob_path(manifest),
                source,
            })
        })?;
        let id = Digest::from_oci(m.config().digest()).ok_or_else(|| {
            ImageError::BadArchive(format!("manifest {manifest} has a non-sha256 config"))
        })?;
        let config: ImageConfig = store.read_json(&id, "image config")?;
        Ok(Image {
            manifest_digest: manifest.clone(),
            manifest: m,
            id,
            config,
            index: None,
        })
    }

    /// Finds an image by name (`busybox`, `app:1`), full id
    /// (`sha256:...`) or unique id prefix (`4a5b`), as `docker` does.
    pub fn resolve(store: &Store, reference: &str) -> Result<Image> {
        Image::resolve_for(store, reference, None)
    }

    /// [`Image::resolve`] choosing `platform`'s image of a multi-platform
    /// name (see [`Image::load_for`]).
    pub fn resolve_for(
        store: &Store,
        reference: &str,
        platform: Option<&crate::registry::Platform>,
    ) -> Result<Image> {
        let tags = store.tags()?;
        if let Ok(name) = reference.parse::<Name>() {
            let full = name.to_string();
            if let Some((_, d)) = tags.iter().find(|(n, _)| *n == full) {
                return Image::load_for(store, &manifest_digest(d)?, platform).map_err(
                    |e| match e {
                        ImageError::NoPlatform {
                            platform,
                            available,
                            ..
                        } => ImageError::NoPlatform {
                            image: full,
                            platform,
                            available,
                        },
                        e => e,
                    },
                );
            }
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found: Vec<Image> = Vec::new();
            for (_, d) in &store.images()? {
                let entry = manifest_digest(d)?;
                // Every platform's image of an index is found by its id
                // (a container records the id of the one it ran).
                let candidates = match index::holds_index(store, &entry) {
                    false => vec![(Image::load_manifest(store, &entry)?, false)],
                    true => {
                        // The image the name shows (`kiln images`' id)
                        // stands for the index: `rmi ID` removes the
                        // name. Another platform's is that image alone:
                        // `tag ID` names it, not the index.
                        let list = index::read(store, &entry)?;
                        let shown = index::choose(&list, None).map(|d| d.digest().clone());
                        let mut all = Vec::new();
                        for child in index::images(&list) {
                            let mut image = Image::load_manifest(store, &manifest_digest(child)?)?;
                            if shown.as_ref() == Some(child.digest()) {
                                image.index = Some(entry.clone());
                            }
                            all.push((image, true));
                        }
                        all
                    }
                };
                // As by name: a one-platform image whatever its platform
                // (callers compare), an index's of the platform asked.
                for (image, of_index) in candidates {
                    if !image.id.hex().starts_with(hex) {
                        continue;
                    }
                    // The shown image's id stands for its index: with a
                    // platform, that platform's image of it (as by name).
                    let image = match (&image.index, platform) {
                        (Some(entry), Some(_)) => match Image::load_for(store, entry, platform) {
                            Ok(chosen) => chosen,
                            Err(ImageError::NoPlatform { .. }) => continue,
                            Err(e) => return Err(e),
                        },
                        _ => image,
                    };
                    let c = &image.config;
                    let platform_ok = platform.is_none_or(|p| {
                        !of_index
                            || (c.os == p.os
                                && c.architecture == p.architecture
                                && p.variant
                                    .as_ref()
                                    .is_none_or(|v| c.variant.as_ref() == Some(v)))
                    });
                    if platform_ok && !found.iter().any(|f| f.id == image.id) {
                        found.push(image);
                    }
                }
            }
            match found.len() {
                1 => return Ok(found.remove(0)),
                0 => {}
                _ => return Err(ImageError::Ambiguous(reference.to_string())),
            }
        }
        Err(ImageError::NotFound(reference.to_string()))
    }

    /// The image as `docker inspect` shows it (`kiln inspect`, the Docker API).
    pub fn docker_json(&self, store: &Store) -> Result<serde_json::Value> {
        let image = self;
        let c = &image.config;
        // Docker names every field, OnBuild too (null when none): clients
        // index it.
        let mut config = serde_json::to_value(&c.config).unwrap_or_default();
        if let Some(map) = config.as_object_mut() {
            map.entry("OnBuild").or_insert(serde_json::Value::Null);
        }
        Ok(serde_json::json!({
            "Id": image.id.to_string(),
            "RepoTags": image.names(store)?,
            "Created": c.created,
            "Author": c.author.clone().unwrap_or_default(),
            "Architecture": c.architecture,
            "Os": c.os,
            "Variant": c.variant,
            "Config": config,
            "Container": c.container.clone().unwrap_or_default(),
            "ContainerConfig": c.container_config.clone().unwrap_or_else(|| serde_json::json!({})),
            "Parent": c.parent.clone().unwrap_or_default(),
            "DockerVersion": "",
            "RootFS": { "Type": c.rootfs.kind, "Layers": c.rootfs.diff_ids },
            "History": c.history,
            "Size": image.size(),
            "Manifest": {
                "Digest": image.manifest_digest.to_string(),
                "Layers": image.manifest.layers(),
            },
            // A multi-platform image's index, with the platforms it names.
            "Index": match &image.index {
                Some(d) => serde_json::json!({ "Digest": d.to_string(), "Platforms": image.platforms(store)? }),
                None => serde_json::Value::Null,
            },
        }))
    }

    /// The names that point at this image's manifest.
    pub fn names(&self, store: &Store) -> Result<Vec<String>> {
        Ok(store
            .tags()?
            .into_iter()
            .filter(|(_, d)| d.digest().to_string() == self.entry_digest().to_string())
            .map(|(n, _)| n)
            .collect())
    }

    /// The layer descriptors with their diffIDs, base first.
    pub fn layers(&self) -> Vec<(Descriptor, Digest)> {
        self.manifest
            .layers()
            .iter()
            .cloned()
            .zip(self.config.rootfs.diff_ids.iter().cloned())
            .collect()
    }

    /// The layers' snapshot directories, base first, unpacking any that is
    /// missing (each checked against its diffID).
    pub fn snapshots(&self, store: &Store) -> Result<Vec<std::path::PathBuf>> {
        self.layers()
            .iter()
            .map(|(layer, diff_id)| {
                ensure_snapshot(store, &manifest_digest(layer)?, diff_id)?;
                Ok(store.snapshot_path(diff_id))
            })
            .collect()
    }

    /// Writes the image's filesystem, its layers applied in order, into
    /// `dir` (`kiln build --output type=local`).
    pub fn export_rootfs(&self, store: &Store, dir: &std::path::Path) -> Result<()> {
        let write = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| ImageError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(write(dir))?;
        // `dir` is opened once and written by descriptor: its path may be
        // in another user's directory, who could swap it for a symlink
        // while root writes. The layers are applied (by path) where only
        // kiln reaches: the store's private tmp.
        let dst = crate::sandbox::fs::Root::open_not_a_link(dir).map_err(write(dir))?;
        let staging = store.temp_path("export");
        std::fs::create_dir(&staging).map_err(write(&staging))?;
        let copied = (|| {
            for (layer, _) in self.layers() {
                let blob = store.open_blob(&manifest_digest(&layer)?)?;
                layer::apply(blob, &staging, layer::Mode::Flatten)?;
            }
            let src = crate::sandbox::fs::Root::open(&staging).map_err(write(&staging))?;
            let take = |_: &str| crate::copier::Take::Entry;
            let links = crate::copier::Links::default();
            let opts = crate::copier::CopyOptions {
                owner: None,
                mode: None,
                take: &take,
                links: &links,
            };
            for name in src.read_dir(".").map_err(write(&staging))? {
                // Moved when the store and DIR share a filesystem and DIR
                // has nothing there yet; copied otherwise.
                if src.move_top_entry(&name, &dst).is_ok() {
                    continue;
                }
                let name = name.to_string_lossy();
                crate::copier::copy_tree(&src, &name, &dst, &name, &opts).map_err(write(dir))?;
            }
            Ok(())
        })();
        let _ = crate::sandbox::fs::remove_dir_all(&staging);
        copied
    }

    /// Total size of the layer blobs.
    pub fn size(&self) -> u64 {
        self.manifest.layers().iter().map(|l| l.size()).sum()
    }

    /// The descriptor the store's index lists for it: its image index's
    /// when it came from one (a tag of it keeps every platform), else its
    /// manifest's.
    pub fn descriptor(&self, store: &Store) -> Descriptor {
        let digest = self.entry_digest();
        let size = std::fs::metadata(store.blob_path(digest))
            .map(|m| m.len())
            .unwrap_or(0);
        let media = match self.index {
            Some(_) => MediaType::ImageIndex,
            None => MediaType::ImageManifest,
        };
        Descriptor::new(media, size, digest.to_oci())
    }

    /// The descriptor of this platform's manifest alone.
    pub fn manifest_descriptor(&self, store: &Store) -> Descriptor {
        let size = std::fs::metadata(store.blob_path(&self.manifest_digest))
            .map(|m| m.len())
            .unwrap_or(0);
        Descriptor::new(
            MediaType::ImageManifest,
            size,
            self.manifest_digest.to_oci(),
        )
    }
}

/// Unpacks a layer's snapshot unless it is there; checks it against its diffID.
pub(crate) fn ensure_snapshot(store: &Store, blob: &Digest, diff_id: &Digest) -> Result<()> {
    if store.snapshot_path(diff_id).is_dir() {
        // The snapshot came from another blob: this one must hold the same
        // layer, or an image could borrow a genuine diffID for its own
        // content (and be exported, compressed, as the genuine layer).
        return verify_diff_id(store, blob, diff_id);
    }
    let reader = store.open_blob(blob)?;
    layer::unpack_snapshot(store, reader, Some(diff_id))?;
    Ok(())
}

/// Checks once per blob that its uncompressed content hashes to
/// `diff_id`; a checked pair is remembered in `cache/verified/`.
fn verify_diff_id(store: &Store, blob: &Digest, diff_id: &Digest) -> Result<()> {
    if blob == diff_id {
        // An uncompressed blob: its digest, checked on every read, is the
        // diffID.
        return Ok(());
    }
    let dir = crate::store::layout::cache(store.root(), crate::store::layout::Cache::Verified);
    let record = dir.join(blob.hex());
    if std::fs::read_to_string(&record).is_ok_and(|t| t.trim() == diff_id.to_string()) {
        return Ok(());
    }
    let mut reader = store.open_blob(blob)?;
    let actual = layer::diff_id_of(&mut reader).map_err(|e| ImageError::Store(reader.error(e)))?;
    if &actual != diff_id {
        return Err(layer::ApplyError::DiffIdMismatch {
            expected: diff_id.clone(),
            actual,
        }
        .into());
    }
    std::fs::create_dir_all(&dir).map_err(|source| ImageError::Write {
        path: dir.clone(),
        source,
    })?;
    store.write_atomic(&record, diff_id.to_string().as_bytes())?;
    Ok(())
}

/// The digest of an index entry, checked.
pub fn manifest_digest(d: &Descriptor) -> Result<Digest> {
    Digest::from_oci(d.digest())
        .ok_or_else(|| ImageError::BadArchive(format!("unsupported digest {}", d.digest())))
}

/// Writes `config` and a manifest over `layers`; returns the manifest's
/// descriptor (not yet tagged).
pub fn write_image(
    store: &Store,
    config: &ImageConfig,
    layers: Vec<Descriptor>,
) -> Result<Descriptor> {
    let config_bytes =
        serde_json::to_vec(config).map_err(|e| ImageError::Json("image config", e))?;
    let (config_digest, config_size) = store.put_bytes(&config_bytes)?;
    let config = Descriptor::new(MediaType::ImageConfig, config_size, config_digest.to_oci());
    write_manifest(store, config, layers, None)
}

/// Writes an OCI manifest over a stored config and `layers`; returns its
/// descriptor (not yet tagged).
pub fn write_manifest(
    store: &Store,
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: Option<std::collections::HashMap<String, String>>,
) -> Result<Descriptor> {
    let mut manifest = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .map_err(|e| ImageError::BadArchive(format!("building manifest: {e}")))?;
    manifest.set_annotations(annotations.filter(|a| !a.is_empty()));
    let bytes = serde_json::to_vec(&manifest).map_err(|e| ImageError::Json("manifest", e))?;
    let (digest, size) = store.put_bytes(&bytes)?;
    Ok(Descriptor::new(
        MediaType::ImageManifest,
        size,
        digest.to_oci(),
    ))
}

/// Copies what it reads into a writer.
struct Tee<'w, R, W> {
    inner: R,
    out: &'w mut W,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// `kiln import`: a root filesystem tarball (plain, gzip or zstd) becomes a
/// one-layer image named `name`, with Dockerfile-style `changes` applied
/// (`CMD ["sh"]`, `ENV A=b`, ...). The layer is stored uncompressed and
/// unpacked as a snapshot in the same pass.
pub fn import<R: Read>(
    store: &Store,
    input: R,
    source: &str,
    name: &Name,
    changes: &[String],
) -> Result<Image> {
    import_for(
        store,
        input,
        source,
        name,
        changes,
        &format!("linux/{}", config::host_architecture()),
        None,
    )
}

/// [`import`] of another platform's root filesystem (`docker import
/// --platform`): `platform` is `os/arch[/variant]`, normalized; `epoch`
/// (SOURCE_DATE_EPOCH, as the caller decided it) is its `created` time,
/// else now.
pub fn import_for<R: Read>(
    store: &Store,
    input: R,
    source: &str,
    name: &Name,
    changes: &[String],
    platform: &str,
    epoch: Option<i64>,
) -> Result<Image> {
    let source_name = source;
    let mut config = ImageConfig {
        created: Some(config::created_at(epoch)),
        ..config::for_platform(platform)
    };
    apply_changes(&mut config.config, changes)?;

    let (_, plain) = layer::decompress(input).map_err(|source| ImageError::Read {
        what: format!("root filesystem tarball {source_name}"),
        source,
    })?;
    // Unpacking hashes the plain tar to the end: that is the blob's digest.
    let mut blob = store.blob_writer_prehashed()?;
    let diff_id = layer::unpack_snapshot(
        store,
        Tee {
            inner: plain,
            out: &mut blob,
        },
        None,
    )?;
    let (digest, size) = blob.commit(Some(&diff_id))?;

    config.rootfs.diff_ids.push(diff_id);
    config.history.push(History {
        created: config.created.clone(),
        created_by: Some(format!("kiln import {source}")),
        comment: Some(format!("Imported from {source}")),
        ..Default::default()
    });
    let layer = Descriptor::new(MediaType::ImageLayer, size, digest.to_oci());
    let manifest = write_image(store, &config, vec![layer])?;
    let manifest_digest = manifest_digest(&manifest)?;
    store.tag(&name.to_string(), manifest)?;
    let image = Image::load(store, &manifest_digest)?;
    store.image_event("import", &image.id.to_string(), &name.to_string());
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs_tar() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
        layer::generate(dir.path(), Vec::new(), Default::default())
            .unwrap()
            .0
    }

    #[test]
    fn import_stores_layer_snapshot_config_and_tag() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let tar = rootfs_tar();
        let name: Name = "test/app:1".parse().unwrap();
        // As in a Dockerfile, one ENV's values see the environment from before it.
        let changes: Vec<String> = [
            "CMD [\"/bin/hello\"]",
            "ENV A=1 C=0",
            "ENV A=2 B=$A-x",
            "WORKDIR /srv",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect();
        let image = import(&store, tar.as_slice(), "rootfs.tar", &name, &changes).unwrap();
        assert_eq!(
            image.config.config.cmd.as_deref(),
            Some(&["/bin/hello".to_string()][..])
        );
        assert_eq!(
            image.config.config.env.as_deref(),
            Some(&["A=2".to_string(), "C=0".to_string(), "B=1-x".to_string()][..])
        );
        assert_eq!(image.config.config.working_dir.as_deref(), Some("/srv"));
        let diff_id = &image.config.rootfs.diff_ids[0];
        assert_eq!(
            diff_id,
            &Digest::of(&tar),
            "uncompressed layer: diffID is the tar's digest"
        );
        assert!(store.has_blob(diff_id));
        assert!(store.snapshot_path(diff_id).join("bin/hello").is_file());
        assert_eq!(Image::resolve(&store, "test/app:1").unwrap().id, image.id);
        assert_eq!(
            Image::resolve(&store, &image.id.hex()[..8]).unwrap().id,
            image.id
        );
        assert!(matches!(
            Image::resolve(&store, "nope"),
            Err(ImageError::NotFound(_))
        ));
        assert!(matches!(
            import(
                &store,
                tar.as_slice(),
                "x",
                &name,
                &["RUN true".to_string()]
            ),
            Err(ImageError::BadChange { .. })
        ));
    }
}
