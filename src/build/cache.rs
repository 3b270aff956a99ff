//! The shared build cache (`--cache-to`, `--cache-from`): step keys and
//! the layers they made, carried between machines as an ordinary image
//! whose layers are the cached layers and whose config label maps each
//! step key to its layer. `type=local` keeps it in a directory that is
//! itself a kiln store (an OCI layout); `type=registry` pushes and pulls it
//! like any image, so any registry can hold it.

use super::{StepResult, record};
use crate::image::{self, Image, ImageConfig, config};
use crate::progress::Mode;
use crate::registry::{self, Client, Platform, Reference, Transfer};
use crate::store::{Digest, Store};
use oci_spec::image::Descriptor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The config label that holds the key map.
const LABEL: &str = "dev.kiln.cache.v1";
/// The name the cache has in a `type=local` directory.
const LOCAL_NAME: &str = "kiln-cache:latest";

/// Where a cache is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSpec {
    /// A directory (`type=local,dest=DIR` / `src=DIR`).
    Local(PathBuf),
    /// A registry reference (`type=registry,ref=REF`).
    Registry(String),
}

/// Which steps `--cache-to` exports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// The steps of the final image's stages (BuildKit's default).
    #[default]
    Min,
    /// The steps of every stage built.
    Max,
}

impl CacheSpec {
    /// Where it is, as a person reads it.
    pub fn describe(&self) -> String {
        match self {
            CacheSpec::Local(dir) => dir.display().to_string(),
            CacheSpec::Registry(r) => r.clone(),
        }
    }

    /// Parses `type=local,dest=DIR|src=DIR[,mode=min|max]` or
    /// `type=registry,ref=REF[,mode=...]`; a bare value is a registry ref.
    pub fn parse(text: &str) -> Result<(CacheSpec, CacheMode), String> {
        if !text.contains('=') {
            return Ok((CacheSpec::Registry(text.to_string()), CacheMode::Min));
        }
        let (mut kind, mut path, mut reference, mut mode) = (None, None, None, CacheMode::Min);
        for field in text.split(',') {
            match field.split_once('=') {
                Some(("type", v)) => kind = Some(v.to_string()),
                Some(("dest" | "src", v)) => path = Some(PathBuf::from(v)),
                Some(("ref", v)) => reference = Some(v.to_string()),
                Some(("mode", "min")) => mode = CacheMode::Min,
                Some(("mode", "max")) => mode = CacheMode::Max,
                _ => {
                    return Err(format!(
                        "invalid cache {text:?}: use type=local,dest=DIR (src=DIR) or type=registry,ref=REF, with mode=min|max"
                    ));
                }
            }
        }
        match (kind.as_deref(), path, reference) {
            (Some("local"), Some(p), _) => Ok((CacheSpec::Local(p), mode)),
            (Some("registry"), _, Some(r)) => Ok((CacheSpec::Registry(r), mode)),
            (Some("local"), None, _) => Err(format!(
                "invalid cache {text:?}: type=local needs dest= or src="
            )),
            (Some("registry"), _, None) => {
                Err(format!("invalid cache {text:?}: type=registry needs ref="))
            }
            (other, _, _) => Err(format!(
                "invalid cache {text:?}: unsupported type {:?} (kiln has local and registry)",
                other.unwrap_or("")
            )),
        }
    }
}

/// A step's cache key as it names a file in the store: 64 lowercase hex
/// digits, nothing else. Keys come from shared caches too, so a key that
/// is not one (`../../etc/cron.d/x`) is refused where it enters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct StepKey(String);

impl StepKey {
    /// Checks `text`.
    pub(crate) fn parse(text: &str) -> Result<StepKey, String> {
        if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(StepKey(text.to_string()))
        } else {
            Err(format!("step key {text:?} is not a sha256 hex digest"))
        }
    }

    /// The key's text (a safe file name).
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StepKey {
    type Error = String;
    fn try_from(text: String) -> Result<StepKey, String> {
        StepKey::parse(&text)
    }
}

impl From<StepKey> for String {
    fn from(k: StepKey) -> String {
        k.0
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: StepKey,
    /// Index into the cache image's layers; None for a step with no diff.
    layer: Option<usize>,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// Copies a blob between stores, verified.
fn copy_blob(from: &Store, to: &Store, d: &Digest) -> Result<(), String> {
    if to.has_blob(d) {
        return Ok(());
    }
    let mut reader = from.open_blob(d).map_err(|e| e.to_string())?;
    let mut writer = to.blob_writer().map_err(|e| e.to_string())?;
    std::io::copy(&mut reader, &mut writer).map_err(|e| reader.error(e).to_string())?;
    writer.commit(Some(d)).map_err(|e| e.to_string())?;
    Ok(())
}

/// Exports `records` (step key → result) to `to`.
pub(super) fn export(
    store: &Store,
    records: &[(String, StepResult)],
    to: &CacheSpec,
    opts: &registry::Options,
) -> Result<usize, String> {
    let mut layers: Vec<(Descriptor, Digest)> = Vec::new();
    let mut entries = Vec::new();
    for (key, r) in records {
        let layer = match (&r.layer, r.diff_id()) {
            (Some((blob, size)), Some(diff_id)) => {
                let media = r
                    .compressed
                    .as_ref()
                    .map(|(_, m)| oci_spec::image::MediaType::from(m.as_str()))
                    .unwrap_or(oci_spec::image::MediaType::ImageLayer);
                let at = layers
                    .iter()
                    .position(|(_, d)| d == diff_id)
                    .unwrap_or_else(|| {
                        layers.push((
                            Descriptor::new(media, *size, blob.to_oci()),
                            diff_id.clone(),
                        ));
                        layers.len() - 1
                    });
                Some(at)
            }
            _ => None,
        };
        entries.push(Entry {
            key: StepKey::parse(key)?,
            layer,
        });
    }
    let mut config = ImageConfig {
        architecture: config::host_architecture().into(),
        os: "linux".into(),
        ..Default::default()
    };
    config.rootfs.diff_ids = layers.iter().map(|(_, d)| d.clone()).collect();
    let map = serde_json::to_string(&entries).map_err(|e| e.to_string())?;
    config.config.labels = Some(BTreeMap::from([(LABEL.to_string(), map)]));
    let manifest = image::write_image(
        store,
        &config,
        layers.iter().map(|(d, _)| d.clone()).collect(),
    )
    .map_err(|e| e.to_string())?;
    let digest = image::manifest_digest(&manifest).map_err(|e| e.to_string())?;
    let cache = Image::load(store, &digest).map_err(|e| e.to_string())?;
    match to {
        CacheSpec::Local(dir) => {
            let dest = Store::open(dir).map_err(|e| e.to_string())?;
            copy_blob(store, &dest, &cache.id)?;
            for (layer, _) in &layers {
                copy_blob(
                    store,
                    &dest,
                    &image::manifest_digest(layer).map_err(|e| e.to_string())?,
                )?;
            }
            copy_blob(store, &dest, &digest)?;
            dest.tag(LOCAL_NAME, cache.descriptor(store))
                .map_err(|e| e.to_string())?;
        }
        CacheSpec::Registry(r) => {
            let reference = Reference::parse(r)?;
            let transfers = Transfer::stderr(Mode::Quiet, "pushed");
            runtime()?
                .block_on(async {
                    let client = Client::connect(&reference.registry, opts, None).await?;
                    registry::push::push(store, &client, &cache, &reference, &transfers).await
                })
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(entries.len())
}

/// Imports the cache at `from` into `store`'s step records; returns how
/// many steps it holds.
pub(super) fn import(
    store: &Store,
    from: &CacheSpec,
    opts: &registry::Options,
) -> Result<usize, String> {
    let cache = match from {
        CacheSpec::Local(dir) => {
            if !dir.join("index.json").is_file() {
                return Err(format!("{} holds no cache (no index.json)", dir.display()));
            }
            let src = Store::open(dir).map_err(|e| e.to_string())?;
            let found = Image::resolve(&src, LOCAL_NAME).map_err(|e| e.to_string())?;
            copy_blob(&src, store, &found.id)?;
            for (layer, _) in found.layers() {
                copy_blob(
                    &src,
                    store,
                    &image::manifest_digest(&layer).map_err(|e| e.to_string())?,
                )?;
            }
            copy_blob(&src, store, &found.manifest_digest)?;
            Image::load(store, &found.manifest_digest).map_err(|e| e.to_string())?
        }
        CacheSpec::Registry(r) => {
            let reference = Reference::parse(r)?;
            let transfers = Transfer::stderr(Mode::Quiet, "pulled");
            runtime()?
                .block_on(async {
                    let client = Client::connect(&reference.registry, opts, None).await?;
                    registry::pull::pull(store, &client, &reference, &Platform::host(), &transfers)
                        .await
                })
                .map_err(|e| e.to_string())?
        }
    };
    cache.snapshots(store).map_err(|e| e.to_string())?;
    let map = cache
        .config
        .config
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL))
        .ok_or("the image is not a kiln cache (no dev.kiln.cache.v1 label)")?;
    let entries: Vec<Entry> =
        serde_json::from_str(map).map_err(|e| format!("the cache's key map: {e}"))?;
    let layers = cache.layers();
    for e in &entries {
        let r = match e.layer.and_then(|i| layers.get(i)) {
            Some((desc, diff_id)) => {
                let blob = image::manifest_digest(desc).map_err(|e| e.to_string())?;
                let compressed =
                    (blob != *diff_id).then(|| (diff_id.clone(), desc.media_type().to_string()));
                StepResult {
                    layer: Some((blob, desc.size())),
                    compressed,
                }
            }
            None => StepResult::default(),
        };
        record(store, e.key.as_str(), &r).map_err(|e| e.to_string())?;
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            CacheSpec::parse("type=local,dest=/c,mode=max").unwrap(),
            (CacheSpec::Local("/c".into()), CacheMode::Max)
        );
        assert_eq!(
            CacheSpec::parse("type=registry,ref=r:5000/c:1").unwrap(),
            (CacheSpec::Registry("r:5000/c:1".into()), CacheMode::Min)
        );
        assert_eq!(
            CacheSpec::parse("r/c:1").unwrap().0,
            CacheSpec::Registry("r/c:1".into())
        );
        assert!(
            CacheSpec::parse("type=s3,ref=x")
                .unwrap_err()
                .contains("unsupported type")
        );
        assert!(
            CacheSpec::parse("type=local")
                .unwrap_err()
                .contains("needs dest=")
        );
    }
}
