//! The shared build cache (`--cache-to`, `--cache-from`): step keys and
//! the layers they made, carried between machines as an ordinary image
//! whose layers are the cached layers and whose config label maps each
//! step key to its layer. `type=local` keeps it in a directory that is
//! itself a kiln store (an OCI layout); `type=registry` pushes and pulls it
//! like any image, so any registry can hold it.

use super::StepResult;
use super::report::{Export, Recorder};
use crate::image::ImageError;
use crate::image::{self, Image, ImageConfig, config};
use crate::progress::Mode;
use crate::registry::{self, Client, Platform, Reference, RegistryError, Transfer};
use crate::store::{Digest, StepKey, Store, StoreError};
use oci_spec::image::Descriptor;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use thiserror::Error;

/// Why a cache could not be read or written.
#[derive(Debug, Error)]
pub enum CacheError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An image of the cache could not be read or written.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The process's runtime could not be started.
    #[error("starting the registry calls: {0}")]
    Runtime(#[from] std::io::Error),
    /// The cache's key map could not be read or written.
    #[error("the cache's key map: {0}")]
    Json(#[from] serde_json::Error),
    /// The cache is not one kiln wrote, or is not whole.
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for CacheError {
    fn from(message: String) -> Self {
        CacheError::Invalid(message)
    }
}

impl From<&str> for CacheError {
    fn from(message: &str) -> Self {
        CacheError::Invalid(message.to_string())
    }
}

/// The config label that holds the key map.
const LABEL: &str = "dev.kiln.cache.v1";
/// The config label that names the cache mounts' layers (`mounts=true`).
const MOUNTS_LABEL: &str = "dev.kiln.cache.mounts.v1";
/// The name the cache has in a `type=local` directory.
const LOCAL_NAME: &str = "kiln-cache:latest";

/// Where a cache is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSpec {
    /// A directory (`type=local,dest=DIR` / `src=DIR`).
    Local(PathBuf),
    /// A registry reference (`type=registry,ref=REF`).
    Registry(String),
    /// A fleet's step cache (`type=registry,ref=REPO,mode=steps`): each
    /// step result its own tag of REPO (`k-KEY`), found by its step key
    /// whichever build made it; looked up step by step, never imported
    /// whole.
    Steps(String),
}

/// The tag of step `key` in a fleet's step cache.
fn step_tag(key: &str) -> String {
    format!("k-{key}")
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

impl CacheTo {
    /// The fleet step cache's repository, when this is one.
    pub fn steps_repo(&self) -> Option<&str> {
        match &self.spec {
            CacheSpec::Steps(r) => Some(r),
            _ => None,
        }
    }
}

impl CacheSpec {
    /// Where it is, as a person reads it.
    pub fn describe(&self) -> String {
        match self {
            CacheSpec::Local(dir) => dir.display().to_string(),
            CacheSpec::Registry(r) | CacheSpec::Steps(r) => r.clone(),
        }
    }

    /// Parses `type=local,dest=DIR|src=DIR[,mode=min|max][,mounts=true]`
    /// or `type=registry,ref=REF[,...]`; a bare value is a registry ref;
    /// `type=registry,ref=REPO,mode=steps` is a fleet's step cache.
    pub fn parse(text: &str) -> Result<CacheTo, String> {
        if !text.contains('=') {
            return Ok(CacheTo {
                spec: CacheSpec::Registry(text.to_string()),
                mode: CacheMode::Min,
                mounts: false,
            });
        }
        let (mut kind, mut path, mut reference, mut mode) = (None, None, None, CacheMode::Min);
        let mut steps = false;
        let mut mounts = false;
        for field in text.split(',') {
            match field.split_once('=') {
                Some(("type", v)) => kind = Some(v.to_string()),
                Some(("dest" | "src", v)) => path = Some(PathBuf::from(v)),
                Some(("ref", v)) => reference = Some(v.to_string()),
                Some(("mode", "min")) => mode = CacheMode::Min,
                Some(("mode", "max")) => mode = CacheMode::Max,
                Some(("mode", "steps")) => {
                    mode = CacheMode::Max;
                    steps = true;
                }
                Some(("mounts", "true")) => mounts = true,
                Some(("mounts", "false")) => mounts = false,
                _ => {
                    return Err(format!(
                        "invalid cache {text:?}: use type=local,dest=DIR (src=DIR) or type=registry,ref=REF, with mode=min|max|steps and mounts=true|false"
                    ));
                }
            }
        }
        let spec = match (kind.as_deref(), path, reference) {
            (Some("local"), _, _) if steps => {
                return Err(format!(
                    "invalid cache {text:?}: mode=steps is a registry repository's"
                ));
            }
            (Some("local"), Some(p), _) => CacheSpec::Local(p),
            (Some("registry"), _, Some(r)) if steps => {
                Reference::parse(&r)?;
                let named = r.rsplit('/').next().unwrap_or_default();
                if !r.contains('/') || named.contains([':', '@']) {
                    return Err(format!(
                        "invalid cache {text:?}: mode=steps takes a repository (REGISTRY/NAME), each step its own tag there"
                    ));
                }
                CacheSpec::Steps(r)
            }
            (Some("registry"), _, Some(r)) => CacheSpec::Registry(r),
            (Some("local"), None, _) => {
                return Err(format!(
                    "invalid cache {text:?}: type=local needs dest= or src="
                ));
            }
            (Some("registry"), _, None) => {
                return Err(format!("invalid cache {text:?}: type=registry needs ref="));
            }
            (other, _, _) => {
                return Err(format!(
                    "invalid cache {text:?}: unsupported type {:?} (kiln has local and registry)",
                    other.unwrap_or("")
                ));
            }
        };
        Ok(CacheTo { spec, mode, mounts })
    }
}

/// A `--cache-to` (or `--cache-from`, which reads only the place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTo {
    /// Where.
    pub spec: CacheSpec,
    /// Which steps.
    pub mode: CacheMode,
    /// `mounts=true`: the contents of the `RUN --mount=type=cache`
    /// directories the build used travel with the cache.
    pub mounts: bool,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: StepKey,
    /// Index into the cache image's layers; None for a step with no diff.
    layer: Option<usize>,
}

/// The process's runtime, for this blocking code's registry calls.
fn runtime() -> Result<crate::runtime::Blocking, CacheError> {
    Ok(crate::runtime::blocking()?)
}

/// Copies a blob between stores, verified.
fn copy_blob(from: &Store, to: &Store, d: &Digest) -> Result<(), CacheError> {
    if to.has_blob(d) {
        return Ok(());
    }
    let mut reader = from.open_blob(d)?;
    let mut writer = to.blob_writer()?;
    std::io::copy(&mut reader, &mut writer).map_err(|e| reader.error(e).to_string())?;
    writer.commit(Some(d))?;
    Ok(())
}

/// How `--cache-to` publishes to a registry ref.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    /// The ref's manifest digest when this build imported it (`Some(None)`:
    /// it had none then); None when the build did not import it. A ref that
    /// changed since is merged into, not overwritten.
    pub seen: Option<Option<Digest>>,
    /// Generations to keep: each export is also tagged `TAG-gen-N`, and the
    /// manifests of older generations are deleted where the registry allows.
    pub keep: Option<usize>,
    /// The cache mounts (names in the store) whose contents travel with
    /// the cache (`mounts=true`).
    pub mounts: Vec<String>,
}

/// What an export did.
#[derive(Debug, Default)]
pub struct Exported {
    /// Step keys the cache holds.
    pub steps: usize,
    /// Bytes of the cache image's layers.
    pub bytes: u64,
    /// Steps merged in from a cache another writer published meanwhile.
    pub merged: usize,
    /// Older generations deleted.
    pub deleted: usize,
    /// Older generations the registry would not let kiln delete.
    pub kept_back: usize,
}

/// A cache mount's directory in the cache image.
#[derive(Serialize, Deserialize)]
struct MountEntry {
    /// The mount's name in the store (`cache/mounts/NAME`).
    name: StepKey,
    /// Index into the cache image's layers.
    layer: usize,
}

/// The layer of cache mount directory `dir` (a plain tar blob in
/// `store`), made while the mount's lock is held so no step writes it
/// meanwhile.
fn mount_layer(store: &Store, dir: &std::path::Path) -> Result<(Descriptor, Digest), CacheError> {
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.with_extension("lock"))
        .map_err(|e| format!("cache mount {}: {e}", dir.display()))?;
    lock.lock()
        .map_err(|e| format!("cache mount {}: {e}", dir.display()))?;
    let writer = store.blob_writer_prehashed()?;
    let (writer, diff_id, _) =
        crate::layer::generate(dir, writer, crate::layer::Options { mtime_clamp: None })
            .map_err(|e| format!("cache mount {}: {e}", dir.display()))?;
    let (digest, size) = writer.commit(Some(&diff_id))?;
    Ok((
        Descriptor::new(
            oci_spec::image::MediaType::ImageLayer,
            size,
            digest.to_oci(),
        ),
        diff_id,
    ))
}

/// Where cache mount `name` lives in `store`.
pub(super) fn mount_dir(store: &Store, name: &str) -> Result<PathBuf, CacheError> {
    Ok(store.mounts().path(name)?)
}

/// Puts the cache mounts a cache image carries into `store`, each one the
/// store does not have yet (a mount this machine has is its own, newer).
fn restore_mounts(store: &Store, cache: &Image) -> Result<usize, CacheError> {
    let Some(map) = cache
        .config
        .config
        .labels
        .as_ref()
        .and_then(|l| l.get(MOUNTS_LABEL))
    else {
        return Ok(0);
    };
    let mounts: Vec<MountEntry> =
        serde_json::from_str(map).map_err(|e| format!("the cache's mount map: {e}"))?;
    let layers = cache.layers();
    let mut restored = 0;
    for m in mounts {
        let dest = mount_dir(store, m.name.as_str())?;
        let Some((desc, diff_id)) = layers.get(m.layer) else {
            return Err(format!("cache mount {} names no layer", m.name.as_str()).into());
        };
        if dest.exists() {
            continue;
        }
        let blob = image::manifest_digest(desc)?;
        let tmp = store.temp_path("cache-mount");
        let unpacked = std::fs::create_dir_all(&tmp)
            .map_err(|e| e.to_string())
            .and_then(|_| store.open_blob(&blob).map_err(|e| e.to_string()))
            .and_then(|b| {
                crate::layer::apply(b, &tmp, crate::layer::Mode::Flatten).map_err(|e| e.to_string())
            });
        match unpacked {
            Ok((got, _)) if got == *diff_id => {}
            Ok((got, _)) => {
                let _ = crate::sandbox::fs::remove_dir_all(&tmp);
                return Err(format!(
                    "cache mount {}: the layer hashes to {got}, not {diff_id}",
                    m.name.as_str()
                )
                .into());
            }
            Err(e) => {
                let _ = crate::sandbox::fs::remove_dir_all(&tmp);
                return Err(format!("cache mount {}: {e}", m.name.as_str()).into());
            }
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Another build may have made it meanwhile: its own is kept.
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => restored += 1,
            Err(_) => {
                let _ = crate::sandbox::fs::remove_dir_all(&tmp);
            }
        }
    }
    Ok(restored)
}

/// The cache image of `records` (step key → result) and of the cache
/// mounts `mounts` (names in the store), written to `store`.
fn cache_image(
    store: &Store,
    records: &[(String, StepResult)],
    mounts: &[String],
) -> Result<Image, CacheError> {
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
    let mut mount_entries = Vec::new();
    for name in mounts {
        let dir = mount_dir(store, name)?;
        if !dir.is_dir() {
            continue;
        }
        layers.push(mount_layer(store, &dir)?);
        mount_entries.push(MountEntry {
            name: StepKey::parse(name)?,
            layer: layers.len() - 1,
        });
    }
    config.rootfs.diff_ids = layers.iter().map(|(_, d)| d.clone()).collect();
    let map = serde_json::to_string(&entries)?;
    let mut labels = BTreeMap::from([(LABEL.to_string(), map)]);
    if !mount_entries.is_empty() {
        labels.insert(
            MOUNTS_LABEL.to_string(),
            serde_json::to_string(&mount_entries)?,
        );
    }
    config.config.labels = Some(labels);
    let manifest = image::write_image(
        store,
        &config,
        layers.iter().map(|(d, _)| d.clone()).collect(),
    )?;
    let digest = image::manifest_digest(&manifest)?;
    Ok(Image::load(store, &digest)?)
}

/// The step keys of a cache image's config, each with its layer index.
fn entries_of(config: &ImageConfig) -> Result<Vec<Entry>, CacheError> {
    let map = config
        .config
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL))
        .ok_or("the image is not a kiln cache (no dev.kiln.cache.v1 label)")?;
    Ok(serde_json::from_str(map)?)
}

/// The step results a cache image holds.
fn results_of(cache: &Image) -> Result<Vec<(String, StepResult)>, CacheError> {
    let layers = cache.layers();
    let mut out = Vec::new();
    for e in entries_of(&cache.config)? {
        let r = match e.layer.and_then(|i| layers.get(i)) {
            Some((desc, diff_id)) => {
                let blob = image::manifest_digest(desc)?;
                let compressed =
                    (blob != *diff_id).then(|| (diff_id.clone(), desc.media_type().to_string()));
                StepResult {
                    layer: Some((blob, desc.size())),
                    compressed,
                }
            }
            None => StepResult::default(),
        };
        out.push((String::from(e.key), r));
    }
    Ok(out)
}

/// The step keys the cache at `spec` holds, read without its layers (a
/// manifest and a config); None when there is no cache there yet.
pub fn keys(
    spec: &CacheSpec,
    opts: &registry::Options,
) -> Result<Option<HashSet<String>>, CacheError> {
    let config: ImageConfig = match spec {
        CacheSpec::Local(dir) => {
            if !dir.join("index.json").is_file() {
                return Ok(None);
            }
            let src = Store::open(dir)?;
            Image::resolve(&src, LOCAL_NAME)?.config
        }
        CacheSpec::Registry(r) => {
            let reference = Reference::parse(r)?;
            let described = runtime()?.block_on(async {
                let client = Client::connect(&reference.registry, opts, None).await?;
                registry::manage::describe(&client, &reference).await
            })?;
            match described {
                Some(d) => serde_json::from_slice(&d.config)
                    .map_err(|e| format!("the cache's config: {e}"))?,
                None => return Ok(None),
            }
        }
        // A step cache is asked step by step, never listed.
        CacheSpec::Steps(_) => return Ok(None),
    };
    Ok(Some(
        entries_of(&config)?
            .into_iter()
            .map(|e| String::from(e.key))
            .collect(),
    ))
}

/// A cache `--cache-from` read, with what its registry ref named then:
/// the export to the same ref re-reads it and merges what another writer
/// put there meanwhile.
pub(super) type Seen = (CacheSpec, Option<Digest>);

/// Imports every `--cache-from` of `opts`; a cache that cannot be read
/// only costs the work it would save (a warning, never an error).
pub(super) fn import_all(store: &Store, opts: &super::Options, report: &Recorder) -> Vec<Seen> {
    let progress = report.progress();
    let mut seen = Vec::new();
    for from in &opts.cache_from {
        if let CacheSpec::Steps(repo) = from {
            progress.note(&format!("looking steps up by key in {repo}"));
            continue;
        }
        match import(store, from, &opts.registry) {
            Ok(i) if i.missing => {
                progress.note(&format!("no cache at {} yet", from.describe()));
                seen.push((from.clone(), None));
            }
            Ok(i) => {
                progress.note(&format!(
                    "imported {} cached steps from {}",
                    i.steps,
                    from.describe()
                ));
                if i.mounts > 0 {
                    progress.note(&format!("restored {} cache mounts", i.mounts));
                }
                if let Some(d) = i.digest {
                    seen.push((from.clone(), Some(d)));
                }
            }
            Err(e) => report.warn(&format!(
                "[Warning] importing cache from {}: {e}",
                from.describe()
            )),
        }
    }
    seen
}

/// The step records `--cache-to` of `mode` exports: every stage's under
/// `max`, under `min` those of the stages in `chain` (the target and the
/// stages its FROMs name: the final image's layers).
pub(super) fn records_for(
    records: &[(usize, String, StepResult)],
    mode: CacheMode,
    chain: &[usize],
) -> Vec<(String, StepResult)> {
    records
        .iter()
        .filter(|(stage, _, _)| mode == CacheMode::Max || chain.contains(stage))
        .map(|(_, k, r)| (k.clone(), r.clone()))
        .collect()
}

/// Exports what the build recorded to `to` (as `--cache-to` asks), its
/// outcome told to `report`; a failed export is a warning.
pub(super) fn export_built(
    store: &Store,
    to: &CacheTo,
    chain: &[usize],
    seen: &[Seen],
    opts: &super::Options,
    report: &Recorder,
) {
    let progress = report.progress();
    let records = records_for(
        &report.records.lock().unwrap_or_else(|e| e.into_inner()),
        to.mode,
        chain,
    );
    let publish = Publish {
        seen: seen
            .iter()
            .find(|(s, _)| *s == to.spec)
            .map(|(_, d)| d.clone()),
        keep: opts.cache_generations,
        mounts: match to.mounts {
            true => report
                .cache_mounts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect(),
            false => Vec::new(),
        },
    };
    let name = to.spec.describe();
    match export(store, &records, &to.spec, &opts.registry, &publish) {
        Ok(e) => {
            report.exported(Export {
                to: name.clone(),
                steps: e.steps,
                bytes: e.bytes,
            });
            if e.merged > 0 {
                progress.note(&format!(
                    "merged {} cached steps another build published to {name} meanwhile",
                    e.merged
                ));
            }
            if e.deleted > 0 {
                progress.note(&format!("deleted {} older cache generations", e.deleted));
            }
            if e.kept_back > 0 {
                report.warn(&format!(
                    "[Warning] {} older cache generations kept: the registry does not allow deletes",
                    e.kept_back
                ));
            }
        }
        Err(e) => report.warn(&format!("[Warning] exporting cache to {name} failed: {e}")),
    }
}

/// Exports `records` (step key → result) to `to`.
pub(super) fn export(
    store: &Store,
    records: &[(String, StepResult)],
    to: &CacheSpec,
    opts: &registry::Options,
    publish: &Publish,
) -> Result<Exported, CacheError> {
    let mut out = Exported::default();
    match to {
        CacheSpec::Local(dir) => {
            let cache = cache_image(store, records, &publish.mounts)?;
            out.steps = records.len();
            out.bytes = cache.size();
            let dest = Store::open(dir)?;
            copy_blob(store, &dest, &cache.id)?;
            for (layer, _) in cache.layers() {
                copy_blob(store, &dest, &image::manifest_digest(&layer)?)?;
            }
            copy_blob(store, &dest, &cache.manifest_digest)?;
            dest.tag(LOCAL_NAME, cache.descriptor(store))?;
        }
        CacheSpec::Steps(repo) => {
            let reference = Reference::parse(repo)?;
            let transfers = Transfer::stderr(Mode::Quiet, "pushed");
            runtime()?.block_on(async {
                let client = Client::connect(&reference.registry, opts, None).await?;
                for (key, r) in records {
                    let at = reference.with_tag(&step_tag(key));
                    // Written once, whichever build made it first.
                    match registry::pull::head(&client, &at).await {
                        Ok(_) => continue,
                        Err(RegistryError::Status { status: 404, .. }) => {}
                        Err(e) => return Err(e),
                    }
                    let one = cache_image(store, &[(key.clone(), r.clone())], &[])
                        .map_err(|e| RegistryError::Manifest(e.to_string()))?;
                    registry::push::push(store, &client, &one, &at, &transfers).await?;
                    out.steps += 1;
                    out.bytes += one.size();
                }
                Ok::<_, RegistryError>(())
            })?;
        }
        CacheSpec::Registry(r) => {
            let reference = Reference::parse(r)?;
            let transfers = Transfer::stderr(Mode::Quiet, "pushed");
            runtime()?.block_on(async {
                let client = Client::connect(&reference.registry, opts, None).await?;
                let mut records = records.to_vec();
                // Re-read the ref just before replacing it: a cache
                // another writer published since this build read it is
                // merged in (its steps this build lacks), not lost.
                if let Some(seen) = &publish.seen {
                    let now = match registry::pull::head(&client, &reference).await {
                        Ok(h) => Some(h.digest),
                        Err(RegistryError::Status { status: 404, .. }) => None,
                        Err(e) => return Err(e),
                    };
                    if now.is_some() && now != *seen {
                        let theirs = registry::pull::pull(
                            store,
                            &client,
                            &reference,
                            &Platform::host(),
                            &transfers,
                        )
                        .await?;
                        let theirs = results_of(&theirs)
                            .map_err(|e| RegistryError::Manifest(e.to_string()))?;
                        for (key, r) in theirs {
                            if !records.iter().any(|(k, _)| *k == key) {
                                records.push((key, r));
                                out.merged += 1;
                            }
                        }
                    }
                }
                let cache = cache_image(store, &records, &publish.mounts)
                    .map_err(|e| RegistryError::Manifest(e.to_string()))?;
                out.steps = records.len();
                out.bytes = cache.size();
                let pushed =
                    registry::push::push(store, &client, &cache, &reference, &transfers).await?;
                if let (Some(keep), Some(digest)) = (publish.keep, &pushed.digest) {
                    let (deleted, kept_back) =
                        generations(store, &client, &reference, digest, keep).await?;
                    out.deleted = deleted;
                    out.kept_back = kept_back;
                }
                Ok::<_, RegistryError>(())
            })?;
        }
    }
    Ok(out)
}

/// Tags the manifest just pushed (`digest`) as the next generation of
/// `reference`'s tag and deletes the manifests of generations older than
/// the `keep` newest (never the one the tag names). Returns how many were
/// deleted and how many the registry would not delete.
async fn generations(
    store: &Store,
    client: &Client,
    reference: &Reference,
    digest: &Digest,
    keep: usize,
) -> Result<(usize, usize), RegistryError> {
    let repo = &reference.repository;
    let prefix = format!("{}-gen-", reference.manifest_ref());
    let mut gens: Vec<(u64, String)> = registry::manage::tags(client, repo)
        .await?
        .into_iter()
        .filter_map(|t| Some((t.strip_prefix(&prefix)?.parse().ok()?, t)))
        .collect();
    let next = gens.iter().map(|(n, _)| n + 1).max().unwrap_or(1);
    let bytes = store.read_blob(digest)?;
    let media = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
    let tag = format!("{prefix}{next}");
    registry::manage::put_manifest(client, repo, &tag, &media, &bytes).await?;
    gens.push((next, tag));
    gens.sort_by_key(|g| std::cmp::Reverse(g.0));
    let mut kept = vec![digest.clone()];
    for (_, tag) in gens.iter().take(keep.max(1)) {
        let r = reference.with_tag(tag);
        if let Ok(h) = registry::pull::head(client, &r).await {
            kept.push(h.digest);
        }
    }
    let (mut deleted, mut kept_back) = (0, 0);
    for (_, tag) in gens.iter().skip(keep.max(1)) {
        let r = reference.with_tag(tag);
        let old = match registry::pull::head(client, &r).await {
            Ok(h) => h.digest,
            Err(RegistryError::Status { status: 404, .. }) => continue,
            Err(e) => return Err(e),
        };
        if kept.contains(&old) {
            continue;
        }
        match registry::manage::delete_manifest(client, repo, &old).await? {
            registry::manage::Deleted::Yes => deleted += 1,
            registry::manage::Deleted::Absent => {}
            registry::manage::Deleted::Refused => kept_back += 1,
        }
    }
    Ok((deleted, kept_back))
}

/// Looks step `key` up in the fleet step cache `repo`: found, its result
/// (and its layer, as a snapshot) is in `store`'s step records; false when
/// the fleet has no such step. One HEAD request for a miss.
pub(super) fn lookup(
    store: &Store,
    repo: &str,
    key: &str,
    opts: &registry::Options,
) -> Result<bool, CacheError> {
    let at = Reference::parse(repo)?.with_tag(&step_tag(key));
    let there = runtime()?.block_on(async {
        let client = Client::connect(&at.registry, opts, None).await?;
        match registry::pull::head(&client, &at).await {
            Ok(_) => Ok(true),
            Err(RegistryError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    })?;
    if !there {
        return Ok(false);
    }
    // A step deleted between the HEAD and the pull is a miss, never a
    // broken build.
    let transfers = Transfer::stderr(Mode::Quiet, "pulled");
    let pulled = runtime()?.block_on(async {
        let client = Client::connect(&at.registry, opts, None).await?;
        registry::pull::pull(store, &client, &at, &Platform::host(), &transfers).await
    });
    let image = match pulled {
        Ok(image) => image,
        Err(RegistryError::Status { status: 404, .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let (_, steps) = record_image(store, &image, Some(key))?;
    Ok(steps == 1)
}

/// What an import found.
#[derive(Debug, Default)]
pub(super) struct Imported {
    /// Step keys the cache holds (0 when there is none yet).
    pub steps: usize,
    /// The registry manifest read (None for a local cache, or a registry
    /// ref that names nothing yet).
    pub digest: Option<Digest>,
    /// True when a registry ref names nothing yet (a first build).
    pub missing: bool,
    /// Cache mounts restored from it.
    pub mounts: usize,
}

/// Imports the cache at `from` into `store`'s step records.
pub(super) fn import(
    store: &Store,
    from: &CacheSpec,
    opts: &registry::Options,
) -> Result<Imported, CacheError> {
    let cache = match from {
        CacheSpec::Local(dir) => {
            if !dir.join("index.json").is_file() {
                return Err(format!("{} holds no cache (no index.json)", dir.display()).into());
            }
            let src = Store::open(dir)?;
            let found = Image::resolve(&src, LOCAL_NAME)?;
            copy_blob(&src, store, &found.id)?;
            for (layer, _) in found.layers() {
                copy_blob(&src, store, &image::manifest_digest(&layer)?)?;
            }
            copy_blob(&src, store, &found.manifest_digest)?;
            Image::load(store, &found.manifest_digest)?
        }
        CacheSpec::Steps(_) => return Ok(Imported::default()),
        CacheSpec::Registry(r) => {
            let reference = Reference::parse(r)?;
            let transfers = Transfer::stderr(Mode::Quiet, "pulled");
            let pulled = runtime()?.block_on(async {
                let client = Client::connect(&reference.registry, opts, None).await?;
                registry::pull::pull(store, &client, &reference, &Platform::host(), &transfers)
                    .await
            });
            match pulled {
                Ok(image) => image,
                Err(RegistryError::Status { status: 404, .. }) => {
                    return Ok(Imported {
                        missing: true,
                        ..Default::default()
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let (mounts, steps) = record_image(store, &cache, None)?;
    Ok(Imported {
        mounts,
        steps,
        digest: matches!(from, CacheSpec::Registry(_)).then(|| cache.manifest_digest.clone()),
        missing: false,
    })
}

/// Records the steps of cache image `cache` in `store` (with `only`, that
/// step's alone: a fleet's step tag defines its own step and no other,
/// whatever else its image lists) and restores its cache mounts; how
/// many mounts and steps.
fn record_image(
    store: &Store,
    cache: &Image,
    only: Option<&str>,
) -> Result<(usize, usize), CacheError> {
    let wanted = |key: &str| only.is_none_or(|o| o == key);
    // Step layers become snapshots (steps read them); mount layers are
    // unpacked into their mounts only.
    let layers = cache.layers();
    let entries = entries_of(&cache.config)?;
    for i in entries
        .iter()
        .filter(|e| wanted(e.key.as_str()))
        .filter_map(|e| e.layer)
    {
        if let Some((desc, diff_id)) = layers.get(i) {
            let blob = image::manifest_digest(desc)?;
            image::ensure_snapshot(store, &blob, diff_id)?;
        }
    }
    let mounts = match only {
        Some(_) => 0,
        None => restore_mounts(store, cache)?,
    };
    let results: Vec<_> = results_of(cache)?
        .into_iter()
        .filter(|(k, _)| wanted(k))
        .collect();
    for (key, r) in &results {
        store.steps().put(&StepKey::parse(key)?, r)?;
    }
    Ok((mounts, results.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_cannot_name_a_mount_outside_the_store() {
        // Mount names become `cache/mounts/NAME`: only a key-shaped name
        // is read from a cache's label.
        for name in ["../../etc", "/etc/passwd", "", "ABC"] {
            let map = serde_json::json!([{ "name": name, "layer": 0 }]).to_string();
            assert!(
                serde_json::from_str::<Vec<MountEntry>>(&map).is_err(),
                "{name}"
            );
        }
        let ok = serde_json::json!([{ "name": "a".repeat(64), "layer": 0 }]).to_string();
        assert!(serde_json::from_str::<Vec<MountEntry>>(&ok).is_ok());
    }

    #[test]
    fn specs() {
        let parse = |t: &str| CacheSpec::parse(t).map(|c| (c.spec, c.mode, c.mounts));
        assert_eq!(
            parse("type=local,dest=/c,mode=max").unwrap(),
            (CacheSpec::Local("/c".into()), CacheMode::Max, false)
        );
        assert_eq!(
            parse("type=registry,ref=r:5000/c:1,mounts=true").unwrap(),
            (
                CacheSpec::Registry("r:5000/c:1".into()),
                CacheMode::Min,
                true
            )
        );
        assert_eq!(
            parse("r/c:1").unwrap().0,
            CacheSpec::Registry("r/c:1".into())
        );
        assert!(
            parse("type=s3,ref=x")
                .unwrap_err()
                .contains("unsupported type")
        );
        assert!(parse("type=local").unwrap_err().contains("needs dest="));
        assert_eq!(
            parse("type=registry,ref=r:5000/team/cache,mode=steps").unwrap(),
            (
                CacheSpec::Steps("r:5000/team/cache".into()),
                CacheMode::Max,
                false
            )
        );
        for tagged in [
            "r:5000/team/cache:1",
            "r/c@sha256:".to_string().as_str(),
            "cache",
        ] {
            assert!(
                parse(&format!("type=registry,ref={tagged},mode=steps")).is_err(),
                "{tagged}"
            );
        }
        assert!(
            parse("type=local,dest=/c,mode=steps")
                .unwrap_err()
                .contains("a registry repository's")
        );
        assert!(
            parse("type=local,dest=/c,mounts=yes")
                .unwrap_err()
                .contains("mounts=true|false")
        );
    }
}
