//! Image archives: `kiln save` writes, `kiln load` reads.
//!
//! - OCI archive: a tar of an OCI image layout (`oci-layout`, `index.json`
//!   with `org.opencontainers.image.ref.name`, `blobs/sha256/*`), as
//!   `skopeo copy oci-archive:` reads and writes it.
//! - docker-archive: what `docker save` writes and `docker load` reads:
//!   `manifest.json` (`Config`, `RepoTags`, `Layers` paths), the config and
//!   layer files. Both the old layout (`<id>/layer.tar`, `<id>.json`) and the
//!   newer one (blobs under `blobs/sha256/`) are read.
//!
//! Loading streams the archive once: blobs go straight into the store,
//! verified against their names; small JSON files are kept in memory; layers
//! under other names are stored under their computed digest.

use super::compress::{for_export, media_type_compression};
use super::{Image, ImageConfig, ImageError, Name, Result, ensure_snapshot, manifest_digest};
use crate::layer::{self, Compression};
use crate::store::{Digest, REF_NAME, Store};
use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::path::Path;

/// Which archive format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OCI image layout in a tar.
    Oci,
    /// `docker save` / `docker load`.
    Docker,
}

/// An entry of docker-archive's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// JSON documents above this size are not archive metadata.
const MAX_METADATA: u64 = 32 << 20;

fn tar_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn write_err(e: io::Error) -> ImageError {
    ImageError::Output {
        what: "the archive".into(),
        source: e,
    }
}

/// Writes `images` as one archive to the file `output`, atomically:
/// into a file created exclusively under a random name beside it, synced,
/// then renamed over it (a name planted in the directory, a symlink
/// included, is never written through). An existing `output` that is not
/// a regular file is written into only when it is this process's own
/// output or the null device (`/dev/stdout`, `/dev/fd/N`, `/dev/null`), or
/// a FIFO of the caller's own (checked again on what was opened): a FIFO
/// or a link to a device another user planted would get the image or have
/// root write it to hardware.
pub fn save_to(
    store: &Store,
    images: &[(String, Image)],
    output: &Path,
    format: Format,
    compression: Compression,
) -> Result<()> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Write { path, source }
    };
    let save_into = |file: std::fs::File| -> Result<std::fs::File> {
        let out = save(store, images, io::BufWriter::new(file), format, compression)?;
        out.into_inner().map_err(|e| write_err(e.into_error()))
    };
    if let Ok(meta) = std::fs::metadata(output)
        && !meta.is_file()
    {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let named = output == Path::new("/dev/null")
            || output == Path::new("/dev/stdout")
            || output == Path::new("/dev/stderr")
            || ["/dev/fd/", "/proc/self/fd/"]
                .iter()
                .any(|p| output.to_str().is_some_and(|o| o.starts_with(p)));
        let me = crate::sandbox::fs::euid();
        let own_fifo = |m: &std::fs::Metadata| m.file_type().is_fifo() && m.uid() == me;
        if !named && !std::fs::symlink_metadata(output).is_ok_and(|m| own_fifo(&m)) {
            return Err(ImageError::NotAFile(output.to_path_buf()));
        }
        let file = match named {
            true => std::fs::OpenOptions::new().write(true).open(output),
            false => crate::sandbox::fs::open_write_nofollow(output),
        }
        .map_err(fail(output))?;
        if !named && !file.metadata().is_ok_and(|m| own_fifo(&m)) {
            return Err(ImageError::NotAFile(output.to_path_buf()));
        }
        save_into(file)?;
        return Ok(());
    }
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
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

/// Writes `images` (name, image) to `out` as one archive. Layers are
/// compressed with `compression` unless they already are.
pub fn save<W: Write>(
    store: &Store,
    images: &[(String, Image)],
    out: W,
    format: Format,
    compression: Compression,
) -> Result<W> {
    let mut w = Writer {
        store,
        tar: tar::Builder::new(out),
        written: std::collections::BTreeSet::new(),
        format,
        compression,
    };
    let mut index_entries = Vec::new();
    let mut docker_entries = Vec::new();
    for (name, image) in images {
        match (format, &image.index) {
            (Format::Oci, Some(index)) => {
                // The whole index: each platform's image, each attestation
                // as it is (their subjects' digests change when layers are
                // compressed, so the annotation follows).
                let list = super::index::read(store, index)?;
                let mut renamed: HashMap<String, String> = HashMap::new();
                let mut entries = Vec::new();
                for child in list.manifests() {
                    if super::index::is_attestation(child) {
                        entries.push(child.clone());
                        continue;
                    }
                    let one = Image::load(store, &manifest_digest(child)?)?;
                    let (manifest, _) = w.image(&one)?;
                    let mut entry = child.clone();
                    renamed.insert(child.digest().to_string(), manifest.digest().to_string());
                    entry.set_digest(manifest.digest().clone());
                    entry.set_size(manifest.size());
                    entries.push(entry);
                }
                for entry in entries
                    .iter_mut()
                    .filter(|e| super::index::is_attestation(e))
                {
                    let attestation = manifest_digest(entry)?;
                    let m: oci_spec::image::ImageManifest =
                        store.read_json(&attestation, "attestation manifest")?;
                    for blob in std::iter::once(m.config()).chain(m.layers()) {
                        w.blob(&manifest_digest(blob)?)?;
                    }
                    w.blob(&attestation)?;
                    let mut annotations = entry.annotations().clone().unwrap_or_default();
                    if let Some(new) = annotations
                        .get(super::index::REFERENCE_DIGEST)
                        .and_then(|d| renamed.get(d))
                    {
                        annotations.insert(super::index::REFERENCE_DIGEST.to_string(), new.clone());
                    }
                    entry.set_annotations(Some(annotations));
                }
                let written = if entries == *list.manifests() {
                    image.descriptor(store)
                } else {
                    super::index::write(store, entries)?
                };
                w.blob(&manifest_digest(&written)?)?;
                let mut d = written;
                d.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), name.clone())])));
                index_entries.push(d);
            }
            (Format::Oci, None) => {
                let (manifest, _) = w.image(image)?;
                let mut d = manifest;
                d.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), name.clone())])));
                index_entries.push(d);
            }
            (Format::Docker, _) => {
                let (_, layers) = w.image(image)?;
                docker_entries.push(DockerEntry {
                    config: format!("blobs/sha256/{}", image.id.hex()),
                    repo_tags: Some(vec![name.clone()]),
                    layers: layers
                        .iter()
                        .map(|l| manifest_digest(l).map(|d| format!("blobs/sha256/{}", d.hex())))
                        .collect::<Result<_>>()?,
                });
            }
        }
    }
    let small = |tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]| {
        let mut h = tar_header(bytes.len() as u64);
        tar.append_data(&mut h, path, bytes).map_err(write_err)
    };
    match format {
        Format::Oci => {
            let mut index = ImageIndex::default();
            index.set_media_type(Some(MediaType::ImageIndex));
            index.set_manifests(index_entries);
            let bytes = serde_json::to_vec(&index).map_err(|e| ImageError::Json("index", e))?;
            small(
                &mut w.tar,
                "oci-layout",
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
            small(&mut w.tar, "index.json", &bytes)?;
        }
        Format::Docker => {
            let bytes = serde_json::to_vec(&docker_entries)
                .map_err(|e| ImageError::Json("manifest.json", e))?;
            small(&mut w.tar, "manifest.json", &bytes)?;
        }
    }
    w.tar.into_inner().map_err(write_err)
}

/// An archive being written: each blob once.
struct Writer<'s, W: Write> {
    store: &'s Store,
    tar: tar::Builder<W>,
    written: std::collections::BTreeSet<Digest>,
    format: Format,
    compression: Compression,
}

impl<W: Write> Writer<'_, W> {
    /// Adds a stored blob unless it is in already.
    fn blob(&mut self, digest: &Digest) -> Result<()> {
        if self.written.contains(digest) {
            return Ok(());
        }
        let size = std::fs::metadata(self.store.blob_path(digest))
            .map(|m| m.len())
            .map_err(|source| ImageError::Read {
                what: format!("blob {digest}"),
                source,
            })?;
        let mut reader = self.store.open_blob(digest)?;
        let mut h = tar_header(size);
        let path = format!("blobs/sha256/{}", digest.hex());
        self.tar
            .append_data(&mut h, &path, &mut reader)
            .map_err(|e| ImageError::Store(reader.error(e)))?;
        self.written.insert(digest.clone());
        Ok(())
    }

    /// Adds one image's blobs; returns its manifest's descriptor (a new
    /// manifest when its layers were compressed for export; OCI only) and
    /// its layers as written.
    fn image(&mut self, image: &Image) -> Result<(Descriptor, Vec<Descriptor>)> {
        let store = self.store;
        let mut layers = Vec::new();
        for (layer, _) in image.layers() {
            let exported = for_export(store, &layer, self.compression)?;
            self.blob(&manifest_digest(&exported)?)?;
            layers.push(exported);
        }
        self.blob(&image.id)?;
        if self.format == Format::Docker {
            return Ok((image.manifest_descriptor(store), layers));
        }
        let manifest = if layers == *image.manifest.layers() {
            image.manifest_descriptor(store)
        } else {
            // The same config with other layer descriptors (compressed copies).
            super::write_manifest(
                store,
                image.manifest.config().clone(),
                layers.clone(),
                image.manifest.annotations().clone(),
            )?
        };
        self.blob(&manifest_digest(&manifest)?)?;
        Ok((manifest, layers))
    }
}

/// What `load` brought in: one line per image, a name or an id.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Names tagged.
    pub names: Vec<String>,
    /// Ids of images that came without a name.
    pub untagged: Vec<Digest>,
}

/// Reads an OCI or docker archive (plain, gzip or zstd) into the store and
/// unpacks every layer's snapshot, so the images are ready to run.
pub fn load<R: Read>(store: &Store, input: R) -> Result<Loaded> {
    fn bad(what: &str) -> impl FnOnce(io::Error) -> ImageError + '_ {
        move |e| ImageError::Read {
            what: what.to_string(),
            source: e,
        }
    }
    let (_, plain) = layer::decompress(input).map_err(bad("the archive"))?;
    let mut archive = tar::Archive::new(plain);
    let mut metadata: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut files: BTreeMap<String, Digest> = BTreeMap::new();
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    for entry in archive.entries().map_err(bad("the archive"))? {
        let mut entry = entry.map_err(bad("the archive"))?;
        let path = String::from_utf8_lossy(&entry.path_bytes())
            .trim_start_matches("./")
            .to_string();
        match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Some(target) = entry.link_name_bytes() {
                    links.insert(path, String::from_utf8_lossy(&target).into_owned());
                }
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            _ => continue,
        }
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let expected: Digest = format!("sha256:{hex}")
                .parse()
                .map_err(|e| ImageError::BadArchive(format!("archive entry {path}: {e}")))?;
            let mut w = store.blob_writer()?;
            io::copy(&mut entry, &mut w).map_err(bad(&path))?;
            w.commit(Some(&expected))?;
            files.insert(path, expected);
        } else if entry.size() <= MAX_METADATA
            && (path.ends_with(".json") || path == "repositories" || path == "oci-layout")
        {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(bad(&path))?;
            metadata.insert(path, bytes);
        } else {
            let mut w = store.blob_writer()?;
            io::copy(&mut entry, &mut w).map_err(bad(&path))?;
            let (digest, _) = w.commit(None)?;
            files.insert(path, digest);
        }
    }
    let mut loaded = Loaded::default();
    if let Some(bytes) = metadata.get("manifest.json") {
        let entries: Vec<DockerEntry> = serde_json::from_slice(bytes).map_err(|e| {
            ImageError::BadArchive(format!(
                "manifest.json is not a docker-archive manifest: {e}"
            ))
        })?;
        for entry in entries {
            load_docker_entry(store, &entry, &metadata, &files, &links, &mut loaded)?;
        }
    } else if let Some(bytes) = metadata.get("index.json") {
        let index: ImageIndex = serde_json::from_slice(bytes)
            .map_err(|e| ImageError::BadArchive(format!("index.json is not an OCI index: {e}")))?;
        for d in index.manifests() {
            load_oci_entry(store, d, &mut loaded)?;
        }
    } else {
        return Err(ImageError::BadArchive(
            "not an image archive: no manifest.json (docker-archive) or index.json (OCI layout)"
                .into(),
        ));
    }
    Ok(loaded)
}

/// Reads one image of the OCI layout directory `dir` into the store (its
/// blobs verified against their digests) and unpacks its snapshots:
/// `reference` picks it by tag (`org.opencontainers.image.ref.name`) or by
/// manifest digest; without one the layout must hold one image. Nothing is
/// tagged. Every path is resolved inside `dir`.
pub fn load_layout(store: &Store, dir: &std::path::Path, reference: Option<&str>) -> Result<Image> {
    let fail =
        |what: String| ImageError::BadArchive(format!("OCI layout {}: {what}", dir.display()));
    let root = crate::sandbox::fs::Root::open(dir).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    root.open_read("index.json")
        .and_then(|f| f.take(MAX_METADATA).read_to_end(&mut bytes))
        .map_err(|e| fail(format!("index.json: {e}")))?;
    let index: ImageIndex = serde_json::from_slice(&bytes)
        .map_err(|e| fail(format!("index.json is not an OCI index: {e}")))?;
    let tag_of = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .cloned()
            .unwrap_or_default()
    };
    let picked: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| match reference {
            None => true,
            Some(r) if r.starts_with("sha256:") => d.digest().to_string() == r,
            Some(r) => {
                let tag = tag_of(d);
                tag == r || tag.rsplit_once(':').is_some_and(|(_, t)| t == r)
            }
        })
        .collect();
    let d = match picked.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(fail(format!(
                "no image {:?} in index.json",
                reference.unwrap_or("")
            )));
        }
        _ => {
            let tags: Vec<String> = picked.iter().map(|d| tag_of(d)).collect();
            return Err(fail(format!(
                "it holds several images ({}): name one with oci-layout://PATH:TAG or @DIGEST",
                tags.join(", ")
            )));
        }
    };
    let copy = |digest: &Digest| -> Result<()> {
        if store.has_blob(digest) {
            return Ok(());
        }
        let rel = format!("blobs/{}/{}", digest.algorithm(), digest.hex());
        let mut file = root
            .open_read(&rel)
            .map_err(|e| fail(format!("{rel}: {e}")))?;
        let mut w = store.blob_writer()?;
        io::copy(&mut file, &mut w).map_err(|e| fail(format!("{rel}: {e}")))?;
        w.commit(Some(digest))?;
        Ok(())
    };
    let mut digest = manifest_digest(&d)?;
    copy(&digest)?;
    if d.media_type() == &MediaType::ImageIndex {
        let inner: ImageIndex = store.read_json(&digest, "index")?;
        let arch = super::config::host_architecture();
        let pick = inner
            .manifests()
            .iter()
            .find(|m| {
                m.platform().as_ref().is_none_or(|p| {
                    p.architecture().to_string() == arch && p.os().to_string() == "linux"
                })
            })
            .ok_or_else(|| fail(format!("index {digest} has no linux/{arch} image")))?;
        digest = manifest_digest(pick)?;
        copy(&digest)?;
    }
    let manifest: oci_spec::image::ImageManifest = store.read_json(&digest, "manifest")?;
    copy(&manifest_digest(manifest.config())?)?;
    for layer in manifest.layers() {
        copy(&manifest_digest(layer)?)?;
    }
    let image = Image::load(store, &digest)?;
    image.snapshots(store)?;
    Ok(image)
}

/// Resolves a path in the archive through symlinks (docker save links
/// repeated layers) to the blob stored for it.
fn archive_file(
    path: &str,
    files: &BTreeMap<String, Digest>,
    links: &BTreeMap<String, String>,
) -> Option<Digest> {
    let mut path = path.trim_start_matches("./").to_string();
    for _ in 0..8 {
        if let Some(d) = files.get(&path) {
            return Some(d.clone());
        }
        let target = links.get(&path)?;
        path = if let Some(abs) = target.strip_prefix('/') {
            abs.to_string()
        } else {
            let base = path.rsplit_once('/').map_or("", |(dir, _)| dir);
            normalize(&format!("{base}/{target}"))
        };
    }
    None
}

fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    out.join("/")
}

fn load_docker_entry(
    store: &Store,
    entry: &DockerEntry,
    metadata: &BTreeMap<String, Vec<u8>>,
    files: &BTreeMap<String, Digest>,
    links: &BTreeMap<String, String>,
    loaded: &mut Loaded,
) -> Result<()> {
    let config_bytes = match archive_file(&entry.config, files, links) {
        Some(d) => store.read_blob(&d)?,
        None => metadata
            .get(entry.config.trim_start_matches("./"))
            .cloned()
            .ok_or_else(|| {
                ImageError::BadArchive(format!(
                    "manifest.json names config {} which the archive lacks",
                    entry.config
                ))
            })?,
    };
    let (config_digest, config_size) = store.put_bytes(&config_bytes)?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| ImageError::BadArchive(format!("config {}: {e}", entry.config)))?;
    if config.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(ImageError::BadArchive(format!(
            "config {} lists {} layers but manifest.json gives {}",
            entry.config,
            config.rootfs.diff_ids.len(),
            entry.layers.len()
        )));
    }
    let mut layers = Vec::new();
    for (path, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
        let digest = archive_file(path, files, links).ok_or_else(|| {
            ImageError::BadArchive(format!(
                "manifest.json names layer {path} which the archive lacks"
            ))
        })?;
        layers.push(layer_descriptor(store, &digest)?);
        ensure_snapshot(store, &digest, diff_id)?;
    }
    let config = Descriptor::new(MediaType::ImageConfig, config_size, config_digest.to_oci());
    let descriptor = super::write_manifest(store, config, layers, None)?;
    let tags = entry.repo_tags.clone().unwrap_or_default();
    if tags.is_empty() {
        loaded.untagged.push(config_digest.clone());
    }
    for tag in tags {
        let name: Name = tag.parse().map_err(ImageError::BadName)?;
        store.tag(&name.to_string(), descriptor.clone())?;
        store.image_event("load", &config_digest.to_string(), &name.to_string());
        loaded.names.push(name.to_string());
    }
    Ok(())
}

fn load_oci_entry(store: &Store, d: &Descriptor, loaded: &mut Loaded) -> Result<()> {
    let digest = manifest_digest(d)?;
    let is_index =
        super::index::is_index(d.media_type()) || super::index::holds_index(store, &digest);
    if is_index && !super::index::complete(store, d) {
        // An index whose archive holds only some platforms' blobs (as
        // docker's save of one platform writes it): of those it holds,
        // the image this machine would use, named alone.
        let index: ImageIndex = store.read_json(&digest, "index")?;
        let present = super::index::present(store, &index);
        let Some(pick) = super::index::choose(&present, None) else {
            return Err(ImageError::BadArchive(format!(
                "index {digest} names no image"
            )));
        };
        let mut pick = pick.clone();
        pick.set_annotations(d.annotations().clone());
        return load_oci_entry(store, &pick, loaded);
    }
    let image = Image::load(store, &digest)?;
    image.snapshots(store)?;
    let annotations = d.annotations().clone().unwrap_or_default();
    let name = annotations
        .get(REF_NAME)
        .or_else(|| annotations.get("io.containerd.image.name"))
        .and_then(|n| n.parse::<Name>().ok());
    match name {
        Some(name) => {
            store.tag(&name.to_string(), image.descriptor(store))?;
            store.image_event("load", &image.id.to_string(), &name.to_string());
            loaded.names.push(name.to_string());
        }
        None => loaded.untagged.push(image.id),
    }
    Ok(())
}

/// The descriptor of a stored layer blob, its media type from its content.
fn layer_descriptor(store: &Store, digest: &Digest) -> Result<Descriptor> {
    let size = std::fs::metadata(store.blob_path(digest))
        .map(|m| m.len())
        .unwrap_or(0);
    let mut prefix = [0u8; 4];
    let mut reader = store.open_blob(digest)?;
    let n = reader.read(&mut prefix).unwrap_or(0);
    let kind = Compression::detect(&prefix[..n]);
    Ok(Descriptor::new(
        MediaType::from(kind.oci_media_type()),
        size,
        digest.to_oci(),
    ))
}

/// The compression a saved layer has (for reporting).
pub fn layer_compression(d: &Descriptor) -> Compression {
    media_type_compression(d.media_type()).unwrap_or(Compression::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_image(store: &Store, name: &str) -> Image {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello"), "hi").unwrap();
        let (tar, _, _) = layer::generate(dir.path(), Vec::new(), Default::default()).unwrap();
        super::super::import(
            store,
            tar.as_slice(),
            "t",
            &name.parse().unwrap(),
            &["CMD [\"/hello\"]".into()],
        )
        .unwrap()
    }

    #[test]
    fn an_index_is_saved_whole_and_an_archive_of_part_of_one_loads_that_part() {
        use crate::image::index;
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let a = one_image(&store, "a:1");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("arm"), "arm").unwrap();
        let (tar, _, _) = layer::generate(dir.path(), Vec::new(), Default::default()).unwrap();
        let b = super::super::import_for(
            &store,
            tar.as_slice(),
            "t",
            &"b:1".parse().unwrap(),
            &[],
            "linux/arm64",
            None,
        )
        .unwrap();
        let host = crate::plan::host_platform();
        let written = index::write(
            &store,
            vec![
                index::entry(&a.manifest_descriptor(&store), &host).unwrap(),
                index::entry(&b.manifest_descriptor(&store), "linux/arm64").unwrap(),
            ],
        )
        .unwrap();
        store.tag("multi:1", written.clone()).unwrap();
        let multi = Image::resolve(&store, "multi:1").unwrap();
        assert_eq!(multi.id, a.id, "this machine's image");
        assert_eq!(
            multi.platforms(&store).unwrap(),
            [host.clone(), "linux/arm64".into()]
        );
        // A tag of it names the index, not one image.
        store.tag("again:1", multi.descriptor(&store)).unwrap();
        let arm = crate::registry::Platform::parse("linux/arm64").unwrap();
        assert_eq!(
            Image::resolve_for(&store, "again:1", Some(&arm))
                .unwrap()
                .id,
            b.id
        );
        // By the arm64 image's id too (a container records it).
        assert_eq!(Image::resolve(&store, &b.id.hex()[..12]).unwrap().id, b.id);

        let mut archive = Vec::new();
        save(
            &store,
            &[("multi:1".into(), multi.clone())],
            &mut archive,
            Format::Oci,
            Compression::None,
        )
        .unwrap();
        let other = tempfile::tempdir().unwrap();
        let dst = Store::open(other.path()).unwrap();
        load(&dst, archive.as_slice()).unwrap();
        let loaded = Image::resolve(&dst, "multi:1").unwrap();
        assert_eq!(
            loaded.index.as_ref(),
            Some(&manifest_digest(&written).unwrap())
        );
        assert_eq!(
            Image::resolve_for(&dst, "multi:1", Some(&arm)).unwrap().id,
            b.id
        );

        // An archive holding the index but one platform's blobs (as a
        // docker save of one platform writes it): that image, named.
        let mut part = Vec::new();
        save(
            &store,
            &[("multi:1".into(), multi)],
            &mut part,
            Format::Oci,
            Compression::None,
        )
        .unwrap();
        let arm_blobs: Vec<String> = b
            .layers()
            .iter()
            .map(|(l, _)| format!("blobs/sha256/{}", manifest_digest(l).unwrap().hex()))
            .collect();
        let mut filtered = tar::Builder::new(Vec::new());
        let mut input = tar::Archive::new(part.as_slice());
        for entry in input.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if arm_blobs.contains(&path) {
                continue;
            }
            let mut h = entry.header().clone();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            filtered
                .append_data(&mut h, &path, bytes.as_slice())
                .unwrap();
        }
        let part = filtered.into_inner().unwrap();
        let third = tempfile::tempdir().unwrap();
        let dst = Store::open(third.path()).unwrap();
        load(&dst, part.as_slice()).unwrap();
        let loaded = Image::resolve(&dst, "multi:1").unwrap();
        assert_eq!((loaded.index, loaded.id), (None, a.id.clone()));
        // Prune walks indexes: both platforms' blobs stay in the first store.
        store.untag("a:1").unwrap();
        store.untag("b:1").unwrap();
        crate::image::prune::prune(&store, None, &[])
            .unwrap()
            .unwrap();
        assert!(store.has_blob(&b.id) && store.has_blob(&a.id));
        assert!(crate::image::index::complete(&store, &written));
    }

    #[test]
    fn oci_and_docker_archives_round_trip() {
        for format in [Format::Oci, Format::Docker] {
            for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
                let a = tempfile::tempdir().unwrap();
                let src = Store::open(a.path()).unwrap();
                let image = one_image(&src, "app:1");
                let bytes = save(
                    &src,
                    &[("app:1".into(), image.clone())],
                    Vec::new(),
                    format,
                    compression,
                )
                .unwrap();
                let b = tempfile::tempdir().unwrap();
                let dst = Store::open(b.path()).unwrap();
                let loaded = load(&dst, bytes.as_slice()).unwrap();
                assert_eq!(loaded.names, ["app:1"], "{format:?} {compression:?}");
                let back = Image::resolve(&dst, "app:1").unwrap();
                assert_eq!(back.id, image.id, "same config, same id");
                assert_eq!(back.config.config.cmd, image.config.config.cmd);
                let diff_id = &back.config.rootfs.diff_ids[0];
                assert_eq!(
                    std::fs::read_to_string(dst.snapshot_path(diff_id).join("hello")).unwrap(),
                    "hi"
                );
                assert_eq!(
                    layer_compression(&back.manifest.layers()[0]),
                    compression,
                    "{format:?}"
                );
                assert!(crate::store::fsck(&dst).unwrap().problems.is_empty());
            }
        }
    }

    #[test]
    fn a_tampered_blob_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let src = Store::open(a.path()).unwrap();
        let image = one_image(&src, "app:1");
        let mut bytes = save(
            &src,
            &[("app:1".into(), image)],
            Vec::new(),
            Format::Oci,
            Compression::None,
        )
        .unwrap();
        // Flip a byte of the first blob's content ("hi" in the layer).
        let at = bytes.windows(2).position(|w| w == b"hi").unwrap();
        bytes[at] = b'H';
        let b = tempfile::tempdir().unwrap();
        let dst = Store::open(b.path()).unwrap();
        let err = load(&dst, bytes.as_slice()).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert!(dst.tags().unwrap().is_empty());
    }

    #[test]
    fn not_an_archive_is_a_clear_error() {
        let b = tempfile::tempdir().unwrap();
        let dst = Store::open(b.path()).unwrap();
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar_header(2);
        t.append_data(&mut h, "readme.txt", &b"hi"[..]).unwrap();
        let err = load(&dst, t.into_inner().unwrap().as_slice()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not an image archive: no manifest.json (docker-archive) or index.json (OCI layout)"
        );
    }
}
