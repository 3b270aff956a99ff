//! Pull: the manifest (choosing this platform's from an index or manifest
//! list), then the config and layers, several at once, each streamed into
//! the store and kept only when its digest is right.

use super::client::{Client, error_chain};
use super::reference::Reference;
use super::{Platform, RegistryError, Transfer};
use crate::image::{self, Image};
use crate::store::{Digest, Store};
use futures::StreamExt;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};
use std::io::Write;

/// What registries are asked for, in docker's order of preference.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Layers fetched at once.
const PARALLEL: usize = 3;

/// A fetched manifest: its bytes, digest and media type.
pub(super) struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
}

fn is_index(media: &str) -> bool {
    media.contains("manifest.list") || media.contains("image.index")
}

/// Asks for manifest `what` of `repository` (GET or HEAD) with the media
/// types kiln reads; a status other than success is an error naming it.
async fn ask_manifest(
    client: &Client,
    repository: &str,
    what: &str,
    method: reqwest::Method,
) -> Result<reqwest::Response, RegistryError> {
    let scope = format!("repository:{repository}:pull");
    let url = client.url(&format!("{repository}/manifests/{what}"));
    let r = client
        .send(&scope, &|h| {
            h.request(method.clone(), &url)
                .header("Accept", MANIFEST_ACCEPT)
        })
        .await?;
    if !r.status().is_success() {
        return Err(RegistryError::status(
            &client.registry,
            repository,
            &format!("manifest {what}"),
            r.status().as_u16(),
        ));
    }
    Ok(r)
}

/// Fetches the manifest `what` (a tag or a digest) of `repository`.
pub(super) async fn fetch_manifest(
    client: &Client,
    repository: &str,
    what: &str,
) -> Result<Fetched, RegistryError> {
    let r = ask_manifest(client, repository, what, reqwest::Method::GET).await?;
    let header_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
    let bytes = r.bytes().await.map_err(|e| RegistryError::Http {
        registry: client.registry.clone(),
        message: error_chain(&e),
    })?;
    let digest = Digest::sha256(Sha256::digest(&bytes).as_slice());
    if let Ok(expected) = what.parse::<Digest>()
        && expected != digest
    {
        return Err(RegistryError::Digest {
            what: format!("manifest of {repository}"),
            expected,
            actual: digest,
        });
    }
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        RegistryError::Manifest(format!(
            "the manifest of {repository}:{what} is not JSON: {e}"
        ))
    })?;
    let media_type = body["mediaType"]
        .as_str()
        .map(String::from)
        .or(header_type)
        .unwrap_or_else(|| {
            if body["manifests"].is_array() {
                "application/vnd.oci.image.index.v1+json".into()
            } else {
                "application/vnd.oci.image.manifest.v1+json".into()
            }
        });
    Ok(Fetched {
        bytes: bytes.to_vec(),
        digest,
        media_type,
    })
}

/// Pulls `reference` into `store` and names it `reference.local_name()`.
pub async fn pull(
    store: &Store,
    client: &Client,
    reference: &Reference,
    platform: &Platform,
    transfer: &Transfer,
) -> Result<Image, RegistryError> {
    let repo = &reference.repository;
    let mut fetched = fetch_manifest(client, repo, &reference.manifest_ref()).await?;
    let mut from_index: Option<ImageIndex> = None;
    if is_index(&fetched.media_type) {
        let index: ImageIndex = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| RegistryError::Manifest(format!("the index of {reference}: {e}")))?;
        from_index = Some(index.clone());
        let pick = platform.choose(index.manifests()).ok_or_else(|| {
            let available: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|m| m.platform().as_ref())
                .map(|p| format!("{}/{}", p.os(), p.architecture()))
                .collect();
            RegistryError::NoPlatform {
                reference: reference.to_string(),
                platform: platform.to_string(),
                available: available.join(", "),
            }
        })?;
        fetched = fetch_manifest(client, repo, pick.digest().as_ref()).await?;
        if is_index(&fetched.media_type) {
            return Err(RegistryError::Manifest(format!(
                "{reference}: an index inside an index is not supported"
            )));
        }
    }
    let manifest: ImageManifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| RegistryError::Manifest(format!("the manifest of {reference}: {e}")))?;
    let mut blobs: Vec<Descriptor> = vec![manifest.config().clone()];
    blobs.extend(manifest.layers().iter().cloned());
    // The blobs borrow the store: they are fetched concurrently on this
    // task, PARALLEL at a time (tokio::spawn would need 'static data).
    let fetches = blobs
        .into_iter()
        .map(|d| fetch_blob(store, client, repo, d, transfer));
    let results: Vec<_> = futures::stream::iter(fetches)
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    for r in results {
        r?;
    }

    let (digest, size) = store.put_bytes(&fetched.bytes)?;
    debug_assert_eq!(digest, fetched.digest);
    record_origin(store, &fetched.digest, &client.registry, repo);
    let descriptor = Descriptor::new(
        MediaType::from(fetched.media_type.as_str()),
        size,
        digest.to_oci(),
    );
    let image = {
        // Pulls of one name in this process (the platforms of one build)
        // decide and tag one after another: the second keeps the first's.
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match &from_index {
            Some(list) => merged(store, &reference.local_name(), list, &digest)?,
            None => descriptor,
        };
        store.tag(&reference.local_name(), entry)?;
        Image::load(store, &digest)?
    };
    store.image_event("pull", &image.id.to_string(), &reference.local_name());
    for blob in std::iter::once(image.manifest.config()).chain(image.manifest.layers()) {
        record_origin(
            store,
            &image::manifest_digest(blob)?,
            &client.registry,
            repo,
        );
    }
    // Layers are unpacked into snapshots when first used (kiln run and
    // build ensure them, checking each against its diffID), not here: a
    // pull only fetches and verifies blobs, as skopeo does.
    Ok(image)
}

/// Pulls `reference` with every platform of its index (`kiln pull
/// --all-platforms`): each image's and attestation's manifest and blobs,
/// then the index, named `reference.local_name()`. A one-platform image
/// is pulled as [`pull`] pulls it.
pub async fn pull_all(
    store: &Store,
    client: &Client,
    reference: &Reference,
    transfer: &Transfer,
) -> Result<Image, RegistryError> {
    let repo = &reference.repository;
    let top = fetch_manifest(client, repo, &reference.manifest_ref()).await?;
    if !is_index(&top.media_type) {
        return pull(store, client, reference, &Platform::host(), transfer).await;
    }
    let index: ImageIndex = serde_json::from_slice(&top.bytes)
        .map_err(|e| RegistryError::Manifest(format!("the index of {reference}: {e}")))?;
    for child in index.manifests() {
        let fetched = fetch_manifest(client, repo, child.digest().as_ref()).await?;
        if is_index(&fetched.media_type) {
            return Err(RegistryError::Manifest(format!(
                "{reference}: an index inside an index is not supported"
            )));
        }
        let manifest: ImageManifest = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| RegistryError::Manifest(format!("a manifest of {reference}: {e}")))?;
        let blobs =
            std::iter::once(manifest.config().clone()).chain(manifest.layers().iter().cloned());
        let fetches = blobs.map(|d| fetch_blob(store, client, repo, d, transfer));
        let results: Vec<_> = futures::stream::iter(fetches)
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for r in results {
            r?;
        }
        store.put_bytes(&fetched.bytes)?;
        record_origin(store, &fetched.digest, &client.registry, repo);
    }
    let (digest, size) = store.put_bytes(&top.bytes)?;
    record_origin(store, &digest, &client.registry, repo);
    let descriptor = Descriptor::new(MediaType::ImageIndex, size, digest.to_oci());
    store.tag(&reference.local_name(), descriptor)?;
    let image = Image::load(store, &digest)?;
    store.image_event("pull", &image.id.to_string(), &reference.local_name());
    Ok(image)
}

/// What a pull of one platform's image `pulled` of the registry's index
/// `list` names `name`: that image's manifest, or, when the name already
/// names other images of the same index (another platform pulled before),
/// a local index of every image of `list` the store holds, so pulling
/// platform after platform (a multi-platform build's bases) keeps them all.
fn merged(
    store: &Store,
    name: &str,
    list: &ImageIndex,
    pulled: &Digest,
) -> Result<Descriptor, RegistryError> {
    let mut have: Vec<String> = vec![pulled.to_string()];
    if let Some((_, current)) = store.tags()?.into_iter().find(|(n, _)| n == name) {
        let current = image::manifest_digest(&current)?;
        match image::index::holds_index(store, &current) {
            true => have.extend(
                image::index::images(&image::index::read(store, &current)?)
                    .iter()
                    .map(|d| d.digest().to_string()),
            ),
            false => have.push(current.to_string()),
        }
    }
    let entries: Vec<Descriptor> = image::index::images(list)
        .into_iter()
        .filter(|d| have.contains(&d.digest().to_string()))
        .cloned()
        .collect();
    match entries.len() {
        0 | 1 => {
            let size = std::fs::metadata(store.blob_path(pulled)).map_or(0, |m| m.len());
            Ok(Descriptor::new(
                MediaType::ImageManifest,
                size,
                pulled.to_oci(),
            ))
        }
        _ => Ok(image::index::write(store, entries)?),
    }
}

/// Fetches one blob unless the store has it; its digest is checked before
/// it is kept.
async fn fetch_blob(
    store: &Store,
    client: &Client,
    repository: &str,
    d: Descriptor,
    transfer: &Transfer,
) -> Result<(), RegistryError> {
    let digest = image::manifest_digest(&d)?;
    if store.has_blob(&digest) {
        transfer.exists(&digest);
        return Ok(());
    }
    let scope = format!("repository:{repository}:pull");
    let url = client.url(&format!("{repository}/blobs/{digest}"));
    let mut r = client.send(&scope, &|h| h.get(&url)).await?;
    if !r.status().is_success() {
        return Err(RegistryError::status(
            &client.registry,
            repository,
            &format!("blob {digest}"),
            r.status().as_u16(),
        ));
    }
    let bar = transfer.start(&digest, d.size());
    let mut writer = store.blob_writer()?;
    loop {
        let chunk = r.chunk().await.map_err(|e| RegistryError::Http {
            registry: client.registry.clone(),
            message: format!("downloading {digest}: {}", error_chain(&e)),
        })?;
        let Some(chunk) = chunk else { break };
        writer
            .write_all(&chunk)
            .map_err(|e| RegistryError::Io(format!("writing blob {digest}: {e}")))?;
        bar.add(chunk.len() as u64);
    }
    match writer.commit(Some(&digest)) {
        Ok(_) => {
            bar.done();
            Ok(())
        }
        Err(crate::store::StoreError::DigestMismatch { actual, .. }) => {
            Err(RegistryError::Digest {
                what: format!("blob of {repository} from {}", client.registry),
                expected: digest,
                actual,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Remembers that `digest` came from `repository` on `registry`, so a push
/// to another repository there can mount it instead of uploading it.
fn record_origin(store: &Store, digest: &Digest, registry: &str, repository: &str) {
    let dir = crate::store::layout::cache(store.root(), crate::store::layout::Cache::Origins);
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = store.write_atomic(
            &dir.join(digest.hex()),
            format!("{registry}/{repository}\n").as_bytes(),
        );
    }
}

/// Where `digest` came from (`registry/repository`), if kiln pulled it.
pub(crate) fn origin(store: &Store, digest: &Digest) -> Option<String> {
    std::fs::read_to_string(
        crate::store::layout::cache(store.root(), crate::store::layout::Cache::Origins)
            .join(digest.hex()),
    )
    .ok()
    .map(|s| s.trim().to_string())
}

/// What a registry says `reference` is now, without downloading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The manifest's digest (an index's when it is one).
    pub digest: Digest,
    /// Docker Hub's `ratelimit-remaining` (pulls left), when it says.
    pub ratelimit_remaining: Option<u64>,
}

/// The digest `reference` has now, asked with a HEAD request (free under
/// Docker Hub's pull limits); a registry that gives no
/// `Docker-Content-Digest` is asked for the manifest itself.
pub async fn head(client: &Client, reference: &Reference) -> Result<Head, RegistryError> {
    let repository = &reference.repository;
    let what = reference.manifest_ref();
    let r = ask_manifest(client, repository, &what, reqwest::Method::HEAD).await?;
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // `ratelimit-remaining: 76;w=21600`
    let ratelimit_remaining = header("ratelimit-remaining")
        .and_then(|v| v.split(';').next().and_then(|n| n.trim().parse().ok()));
    let digest = match header("docker-content-digest").and_then(|d| d.parse::<Digest>().ok()) {
        Some(d) => d,
        None => fetch_manifest(client, repository, &what).await?.digest,
    };
    Ok(Head {
        digest,
        ratelimit_remaining,
    })
}

/// Pulls `reference` through the mirrors configured for its registry, in
/// order, then from the registry itself; the image is named as asked.
pub async fn pull_via_mirrors(
    store: &Store,
    opts: &super::Options,
    reference: &Reference,
    platform: &Platform,
    transfer: &Transfer,
) -> Result<Image, RegistryError> {
    let mirrors = opts
        .mirrors
        .get(&reference.registry)
        .cloned()
        .unwrap_or_default();
    let mut last = None;
    for mirror in mirrors {
        let attempt = async {
            let client = Client::connect(&mirror, opts, None).await?;
            pull(store, &client, reference, platform, transfer).await
        };
        match attempt.await {
            Ok(image) => return Ok(image),
            Err(e) => last = Some(e),
        }
    }
    match Client::connect(&reference.registry, opts, None).await {
        Ok(client) => pull(store, &client, reference, platform, transfer).await,
        Err(e) => Err(last.unwrap_or(e)),
    }
}

/// When an image is fetched from its registry (`--pull` of `kiln build`'s
/// bases and of `kiln run`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// Only when the store does not have it.
    #[default]
    Missing,
    /// Every time (the registry's tag may have moved).
    Always,
    /// Never: an image the store lacks is an error.
    Never,
}

/// Why [`ensure`] has no image.
#[derive(Debug, thiserror::Error)]
pub enum EnsureError {
    /// Not in the store, and the policy is `never`.
    #[error("image {0} is not in the store, and --pull=never: pull, import or load it first")]
    Never(String),
    /// Not in the store, and not a name a registry could have.
    #[error("image {name} is not in the store (and is no reference to pull: {why})")]
    NoReference {
        /// The name given.
        name: String,
        /// Why it is no reference.
        why: String,
    },
    /// The pull failed.
    #[error("image {name} is not in the store, and pulling it failed: {source}")]
    Pull {
        /// The name given.
        name: String,
        /// The registry's failure (boxed: it is large).
        #[source]
        source: Box<RegistryError>,
    },
    /// `always`: the pull failed (the store's copy is not used instead, as
    /// docker's and BuildKit's `--pull` do not).
    #[error("pulling {name} failed: {source}")]
    PullAlways {
        /// The name given.
        name: String,
        /// The registry's failure (boxed: it is large).
        #[source]
        source: Box<RegistryError>,
    },
}

/// The image `name` as `policy` says: the store's, or pulled from its
/// registry (through its mirrors) quietly, for `platform`. One meaning for
/// every command that takes `--pull`. Not to be called inside a tokio
/// runtime: it runs the pull on one of its own.
pub fn ensure(
    store: &Store,
    opts: &super::Options,
    name: &str,
    policy: Policy,
    platform: &Platform,
) -> Result<Image, EnsureError> {
    // A multi-platform name gives the platform's image; one without it is
    // missing (pulled, or refused with --pull=never).
    let local = match Image::resolve_for(store, name, Some(platform)) {
        Ok(image) => Some(image),
        // An index without this platform: its image this machine would
        // use (a foreign one runs through its emulator; a build's stage
        // refuses a base of another platform) rather than a pull that
        // would move the name off the index.
        Err(crate::image::ImageError::NoPlatform { .. }) if policy != Policy::Always => {
            Image::resolve(store, name).ok()
        }
        Err(_) => None,
    };
    match (local, policy) {
        (Some(image), Policy::Missing | Policy::Never) => return Ok(image),
        (None, Policy::Never) => return Err(EnsureError::Never(name.to_string())),
        _ => {}
    }
    let reference = Reference::parse(name).map_err(|e| EnsureError::NoReference {
        name: name.to_string(),
        why: e.to_string(),
    })?;
    let failed = |source: RegistryError| match policy {
        Policy::Always => EnsureError::PullAlways {
            name: name.to_string(),
            source: Box::new(source),
        },
        _ => EnsureError::Pull {
            name: name.to_string(),
            source: Box::new(source),
        },
    };
    let runtime = crate::runtime::blocking().map_err(|e| {
        failed(RegistryError::Http {
            registry: reference.registry.clone(),
            message: format!("starting the pull: {e}"),
        })
    })?;
    let transfers = Transfer::stderr(crate::progress::Mode::Quiet, "pulled");
    runtime
        .block_on(pull_via_mirrors(
            store, opts, &reference, platform, &transfers,
        ))
        .map_err(failed)
}
