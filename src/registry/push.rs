//! Push: layers (compressed on the way out, as `kiln save` does) and the
//! config, skipping blobs the registry has (HEAD) and mounting those it has
//! in another repository kiln pulled them from; then the manifest.

use super::client::{Client, error_chain};
use super::reference::Reference;
use super::{RegistryError, Transfer};
use crate::image::{self, Image};
use crate::layer::Compression;
use crate::store::{Digest, Store};
use futures::StreamExt;
use oci_spec::image::{Descriptor, MediaType};
use reqwest::StatusCode;

/// Blobs uploaded at once.
const PARALLEL: usize = 3;

/// What a push did.
#[derive(Debug, Default)]
pub struct Pushed {
    /// The manifest's digest in the registry.
    pub digest: Option<Digest>,
    /// The manifest's size.
    pub size: u64,
    /// Blobs sent.
    pub uploaded: usize,
    /// Blobs the registry already had (or mounted).
    pub skipped: usize,
}

/// Pushes `image` to `reference` (its tag).
pub async fn push(
    store: &Store,
    client: &Client,
    image: &Image,
    reference: &Reference,
    transfer: &Transfer,
) -> Result<Pushed, RegistryError> {
    let repo = &reference.repository;
    // Layers leave compressed; the manifest then names the compressed blobs.
    let mut layers = Vec::new();
    for (layer, diff_id) in image.layers() {
        layers.push(image::compress::for_export(
            store,
            &layer,
            &diff_id,
            Compression::Gzip,
        )?);
    }
    let manifest = if layers == *image.manifest.layers() {
        image.descriptor(store)
    } else {
        image::write_manifest(store, image.manifest.config().clone(), layers.clone())?
    };
    let mut blobs = layers;
    blobs.push(image.manifest.config().clone());
    let uploads = blobs
        .into_iter()
        .map(|d| push_blob(store, client, repo, d, transfer));
    let results: Vec<_> = futures::stream::iter(uploads)
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut pushed = Pushed::default();
    for r in results {
        if r? {
            pushed.uploaded += 1;
        } else {
            pushed.skipped += 1;
        }
    }

    let digest = image::manifest_digest(&manifest)?;
    let bytes = store.read_blob(&digest)?;
    let media = match manifest.media_type() {
        MediaType::Other(s) => s.clone(),
        m => m.to_string(),
    };
    let tag = reference.manifest_ref();
    let url = client.url(&format!("{repo}/manifests/{tag}"));
    let scope = format!("repository:{repo}:pull,push");
    let r = client
        .send(&scope, &|h| {
            h.put(&url)
                .header("Content-Type", media.clone())
                .body(bytes.clone())
        })
        .await?;
    if !r.status().is_success() {
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        return Err(RegistryError::Rejected {
            registry: client.registry.clone(),
            repository: repo.clone(),
            what: "the manifest".into(),
            status,
            body,
        });
    }
    pushed.digest = Some(digest);
    pushed.size = bytes.len() as u64;
    Ok(pushed)
}

/// Sends one blob unless the registry has it; true when it was sent.
async fn push_blob(
    store: &Store,
    client: &Client,
    repo: &str,
    d: Descriptor,
    transfer: &Transfer,
) -> Result<bool, RegistryError> {
    let digest = image::manifest_digest(&d)?;
    let scope = format!("repository:{repo}:pull,push");
    let head = client.url(&format!("{repo}/blobs/{digest}"));
    let r = client.send(&scope, &|h| h.head(&head)).await?;
    if r.status().is_success() {
        transfer.exists(&digest);
        return Ok(false);
    }
    // A blob kiln pulled from another repository of this registry is
    // mounted: the registry copies it without an upload.
    let from = super::pull::origin(store, &digest)
        .and_then(|o| {
            o.strip_prefix(&format!("{}/", client.registry))
                .map(String::from)
        })
        .filter(|o| o != repo);
    let (post, scope) = match &from {
        Some(other) => (
            client.url(&format!(
                "{repo}/blobs/uploads/?mount={digest}&from={other}"
            )),
            format!("repository:{repo}:pull,push repository:{other}:pull"),
        ),
        None => (client.url(&format!("{repo}/blobs/uploads/")), scope),
    };
    let r = client.send(&scope, &|h| h.post(&post)).await?;
    if r.status() == StatusCode::CREATED && from.is_some() {
        transfer.exists(&digest);
        return Ok(false);
    }
    if r.status() != StatusCode::ACCEPTED {
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        return Err(RegistryError::Rejected {
            registry: client.registry.clone(),
            repository: repo.to_string(),
            what: format!("starting the upload of {digest}"),
            status,
            body,
        });
    }
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(|l| client.absolute(l))
        .ok_or_else(|| {
            RegistryError::Manifest(format!(
                "{} started an upload without a Location",
                client.registry
            ))
        })?;
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = format!("{location}{sep}digest={digest}");
    let path = store.blob_path(&digest);
    let size = d.size();
    let bar = transfer.start(&digest, size);
    // One PUT with the whole blob, streamed from the store (monolithic
    // upload, which every registry takes).
    let r = client
        .send(&scope, &|h| {
            let body = match std::fs::File::open(&path) {
                Ok(f) => reqwest::Body::from(tokio::fs::File::from_std(f)),
                Err(_) => reqwest::Body::from(Vec::new()),
            };
            h.put(&put)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", size)
                .body(body)
        })
        .await
        .map_err(|e| match e {
            RegistryError::Http { registry, message } => RegistryError::Http {
                registry,
                message: format!("uploading {digest}: {message}"),
            },
            e => e,
        })?;
    if !r.status().is_success() {
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_else(|e| error_chain(&e));
        return Err(RegistryError::Rejected {
            registry: client.registry.clone(),
            repository: repo.to_string(),
            what: format!("blob {digest}"),
            status,
            body,
        });
    }
    bar.add(size);
    bar.done();
    Ok(true)
}
