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

/// Pushes `image` to `reference` (its tag): a multi-platform image's
/// whole index (each platform's image and each attestation manifest,
/// shared blobs once), else the one image.
pub async fn push(
    store: &Store,
    client: &Client,
    image: &Image,
    reference: &Reference,
    transfer: &Transfer,
) -> Result<Pushed, RegistryError> {
    let Some(index_digest) = &image.index else {
        return push_image(
            store,
            client,
            image,
            reference,
            &reference.manifest_ref(),
            transfer,
        )
        .await;
    };
    let repo = &reference.repository;
    let bytes = image::index::read_small(store, index_digest)?;
    let list: oci_spec::image::ImageIndex = serde_json::from_slice(&bytes)
        .map_err(|e| RegistryError::Manifest(format!("index {index_digest}: {e}")))?;
    let mut pushed = Pushed::default();
    let mut entries = list.manifests().clone();
    // Images first: one whose layers leave compressed becomes another
    // manifest, and the attestations about it follow its new digest.
    let mut renamed: Vec<(String, String)> = Vec::new();
    // Each image's digest and size as the registry has it.
    let mut images_sent: Vec<(Digest, u64)> = Vec::new();
    for entry in entries
        .iter_mut()
        .filter(|e| !image::index::is_attestation(e))
    {
        let digest = image::manifest_digest(entry)?;
        let one = Image::load(store, &digest)?;
        let sent = push_image(
            store,
            client,
            &one,
            reference,
            &digest.to_string(),
            transfer,
        )
        .await?;
        pushed.uploaded += sent.uploaded;
        pushed.skipped += sent.skipped;
        if let Some(d) = &sent.digest
            && *d != digest
        {
            renamed.push((digest.to_string(), d.to_string()));
            entry.set_digest(d.to_oci());
            entry.set_size(sent.size);
        }
        images_sent.push((image::manifest_digest(entry)?, entry.size()));
    }
    for entry in entries
        .iter_mut()
        .filter(|e| image::index::is_attestation(e))
    {
        let digest = image::manifest_digest(entry)?;
        let m: oci_spec::image::ImageManifest = store.read_json(&digest, "attestation")?;
        for blob in std::iter::once(m.config()).chain(m.layers()) {
            match push_blob(store, client, repo, blob.clone(), transfer).await? {
                true => pushed.uploaded += 1,
                false => pushed.skipped += 1,
            }
        }
        let manifest = store.read_blob(&digest)?;
        super::manage::put_manifest(
            client,
            repo,
            &digest.to_string(),
            MediaType::ImageManifest.as_ref(),
            &manifest,
        )
        .await?;
        let mut annotations = entry.annotations().clone().unwrap_or_default();
        if let Some((_, new)) = annotations
            .get(image::index::REFERENCE_DIGEST)
            .and_then(|about| renamed.iter().find(|(old, _)| old == about))
        {
            annotations.insert(image::index::REFERENCE_DIGEST.to_string(), new.clone());
            entry.set_annotations(Some(annotations.clone()));
        }
        // Also an OCI referrer of its image (a copy with a `subject`), as
        // registries and tools of OCI 1.1 find attestations.
        let subject = annotations
            .get(image::index::REFERENCE_DIGEST)
            .and_then(|d| d.parse::<Digest>().ok());
        let subject_size = subject.as_ref().and_then(|d| {
            images_sent
                .iter()
                .find(|(sent, _)| sent == d)
                .map(|(_, size)| *size)
        });
        if let (Some(subject), Some(size)) = (subject, subject_size) {
            let mut referrer: serde_json::Value = serde_json::from_slice(&manifest)
                .map_err(|e| RegistryError::Manifest(format!("attestation {digest}: {e}")))?;
            referrer["artifactType"] = super::manage::ATTESTATION_ARTIFACT.into();
            referrer["subject"] = serde_json::json!({
                "mediaType": MediaType::ImageManifest.to_string(),
                "digest": subject.to_string(),
                "size": size,
            });
            let bytes = serde_json::to_vec(&referrer)
                .map_err(|e| RegistryError::Manifest(format!("attestation {digest}: {e}")))?;
            let referrer_digest = Digest::of(&bytes);
            super::manage::put_manifest(
                client,
                repo,
                &referrer_digest.to_string(),
                MediaType::ImageManifest.as_ref(),
                &bytes,
            )
            .await?;
            let mut d = Descriptor::new(
                MediaType::ImageManifest,
                bytes.len() as u64,
                referrer_digest.to_oci(),
            );
            d.set_artifact_type(Some(MediaType::from(super::manage::ATTESTATION_ARTIFACT)));
            super::manage::add_referrer(client, repo, &subject, d).await?;
        }
    }
    let (digest, bytes) = match entries == *list.manifests() {
        true => (index_digest.clone(), bytes),
        false => {
            let written = image::index::write(store, entries)?;
            let digest = image::manifest_digest(&written)?;
            let bytes = store.read_blob(&digest)?;
            (digest, bytes)
        }
    };
    // Sent as what it says it is (a docker manifest list pulled whole
    // stays one).
    let media = match list.media_type() {
        Some(MediaType::Other(m)) => m.clone(),
        Some(m) => m.to_string(),
        None => MediaType::ImageIndex.to_string(),
    };
    super::manage::put_manifest(client, repo, &reference.manifest_ref(), &media, &bytes).await?;
    pushed.digest = Some(digest);
    pushed.size = bytes.len() as u64;
    store.image_event("push", &image.id.to_string(), &reference.to_string());
    Ok(pushed)
}

/// Pushes one image's blobs and its manifest as `manifest_ref` (its tag,
/// or its digest inside an index).
async fn push_image(
    store: &Store,
    client: &Client,
    image: &Image,
    reference: &Reference,
    manifest_ref: &str,
    transfer: &Transfer,
) -> Result<Pushed, RegistryError> {
    let repo = &reference.repository;
    // Layers leave compressed. A blocking thread compresses them one after
    // another (each on every core) while the uploads of those already
    // compressed go on.
    let root = store.root().to_path_buf();
    let plain = image.layers();
    let count = plain.len();
    let (tx, rx) = tokio::sync::mpsc::channel::<(usize, Descriptor)>(2);
    let compressor = tokio::task::spawn_blocking(move || -> Result<(), RegistryError> {
        // A second handle on the same store: the open one is borrowed.
        let store = Store::open(&root)?;
        for (i, (layer, _)) in plain.into_iter().enumerate() {
            let d = image::compress::for_export(&store, &layer, Compression::Gzip)?;
            if tx.blocking_send((i, d)).is_err() {
                break;
            }
        }
        Ok(())
    });
    let ready = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let uploads = ready.map(|(i, d)| async move {
        let sent = push_blob(store, client, repo, d.clone(), transfer).await?;
        Ok::<_, RegistryError>((i, d, sent))
    });
    let results: Vec<_> = uploads.buffer_unordered(PARALLEL).collect().await;
    compressor
        .await
        .map_err(|e| RegistryError::Io(format!("compressing layers: {e}")))??;
    let mut pushed = Pushed::default();
    let mut layers: Vec<Option<Descriptor>> = vec![None; count];
    for r in results {
        let (i, d, sent) = r?;
        layers[i] = Some(d);
        if sent {
            pushed.uploaded += 1;
        } else {
            pushed.skipped += 1;
        }
    }
    let layers: Vec<Descriptor> = layers
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| RegistryError::Io("a layer was not compressed".into()))?;
    if push_blob(
        store,
        client,
        repo,
        image.manifest.config().clone(),
        transfer,
    )
    .await?
    {
        pushed.uploaded += 1;
    } else {
        pushed.skipped += 1;
    }
    let manifest = if layers == *image.manifest.layers() {
        image.manifest_descriptor(store)
    } else {
        image::write_manifest(
            store,
            image.manifest.config().clone(),
            layers,
            image.manifest.annotations().clone(),
        )?
    };

    let digest = image::manifest_digest(&manifest)?;
    let bytes = store.read_blob(&digest)?;
    let media = match manifest.media_type() {
        MediaType::Other(s) => s.clone(),
        m => m.to_string(),
    };
    // Inside an index a manifest is sent by its digest: its own, which
    // differs from the stored one's when its layers left compressed.
    let manifest_ref = match manifest_ref.starts_with("sha256:") {
        true => digest.to_string(),
        false => manifest_ref.to_string(),
    };
    super::manage::put_manifest(client, repo, &manifest_ref, &media, &bytes).await?;
    pushed.digest = Some(digest);
    pushed.size = bytes.len() as u64;
    if manifest_ref == reference.manifest_ref() {
        store.image_event("push", &image.id.to_string(), &reference.to_string());
    }
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
                Ok(f) => body_of(tokio::fs::File::from_std(f)),
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

/// A request body streamed from `file` in 256 KiB pieces (reqwest's own
/// file body reads 4 KiB at a time, one blocking-pool trip each).
fn body_of(file: tokio::fs::File) -> reqwest::Body {
    use tokio::io::AsyncReadExt;
    let pieces = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    reqwest::Body::wrap_stream(pieces)
}
