//! A repository's tags and manifests beyond pull and push: listing tags,
//! naming a manifest under another tag, reading a manifest and its config
//! without the layers, and deleting a manifest where the registry allows
//! it (the distribution registry only with `storage.delete.enabled`).

use super::RegistryError;
use super::client::{Client, error_chain};
use super::pull::fetch_manifest;
use super::reference::Reference;
use crate::store::Digest;
use oci_spec::image::ImageManifest;
use sha2::{Digest as _, Sha256};

/// A manifest read with its config, not its layers.
pub struct Described {
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config blob's bytes, checked against its digest.
    pub config: Vec<u8>,
}

fn http(client: &Client, e: &reqwest::Error) -> RegistryError {
    RegistryError::Http {
        registry: client.registry.clone(),
        message: error_chain(e),
    }
}

/// The manifest `reference` names and its config; None when the registry
/// has no such manifest (404).
pub async fn describe(
    client: &Client,
    reference: &Reference,
) -> Result<Option<Described>, RegistryError> {
    let repo = &reference.repository;
    let fetched = match fetch_manifest(client, repo, &reference.manifest_ref()).await {
        Ok(f) => f,
        Err(RegistryError::Status { status: 404, .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let manifest: ImageManifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| RegistryError::Manifest(format!("the manifest of {reference}: {e}")))?;
    let digest: Digest = manifest
        .config()
        .digest()
        .to_string()
        .parse()
        .map_err(|e| RegistryError::Manifest(format!("the config of {reference}: {e}")))?;
    let scope = format!("repository:{repo}:pull");
    let url = client.url(&format!("{repo}/blobs/{digest}"));
    let r = client.send(&scope, &|h| h.get(&url)).await?;
    if !r.status().is_success() {
        return Err(RegistryError::status(
            &client.registry,
            repo,
            &format!("blob {digest}"),
            r.status().as_u16(),
        ));
    }
    let config = r.bytes().await.map_err(|e| http(client, &e))?.to_vec();
    let actual = Digest::sha256(Sha256::digest(&config).as_slice());
    if actual != digest {
        return Err(RegistryError::Digest {
            what: format!("config of {reference}"),
            expected: digest,
            actual,
        });
    }
    Ok(Some(Described {
        digest: fetched.digest,
        manifest,
        config,
    }))
}

/// Every tag of `repository`, following the registry's pages.
pub async fn tags(client: &Client, repository: &str) -> Result<Vec<String>, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Page {
        tags: Option<Vec<String>>,
    }
    let scope = format!("repository:{repository}:pull");
    let mut url = client.url(&format!("{repository}/tags/list"));
    let mut all = Vec::new();
    // A registry that pages forever is cut off: a cache repository with a
    // hundred thousand tags is not one kiln made.
    for _ in 0..1000 {
        let r = client.send(&scope, &|h| h.get(&url)).await?;
        if r.status().as_u16() == 404 {
            return Ok(all);
        }
        if !r.status().is_success() {
            return Err(RegistryError::status(
                &client.registry,
                repository,
                "tag list",
                r.status().as_u16(),
            ));
        }
        // `Link: </v2/repo/tags/list?last=x&n=100>; rel="next"`
        let next = r
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.split_once('<'))
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(u, _)| client.absolute(u));
        let bytes = r.bytes().await.map_err(|e| http(client, &e))?;
        let page: Page = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::Manifest(format!("the tag list of {repository}: {e}")))?;
        all.extend(page.tags.unwrap_or_default());
        match next {
            Some(n) => url = n,
            None => return Ok(all),
        }
    }
    Ok(all)
}

/// Puts manifest `bytes` (of `media_type`) under `tag` of `repository`.
pub async fn put_manifest(
    client: &Client,
    repository: &str,
    tag: &str,
    media_type: &str,
    bytes: &[u8],
) -> Result<(), RegistryError> {
    let url = client.url(&format!("{repository}/manifests/{tag}"));
    let scope = format!("repository:{repository}:pull,push");
    let r = client
        .send(&scope, &|h| {
            h.put(&url)
                .header("Content-Type", media_type)
                .body(bytes.to_vec())
        })
        .await?;
    if !r.status().is_success() {
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        return Err(RegistryError::Rejected {
            registry: client.registry.clone(),
            repository: repository.to_string(),
            what: "the manifest".into(),
            status,
            body,
        });
    }
    Ok(())
}

/// The artifact type kiln's attestation referrers carry (BuildKit's name
/// for an attestation manifest).
pub const ATTESTATION_ARTIFACT: &str = "application/vnd.docker.attestation.manifest.v1+json";

/// Makes `referrer` (a manifest whose `subject` is `subject`, already
/// pushed) findable as a referrer of `subject` (OCI distribution 1.1): a
/// registry that answers the referrers API lists it itself; for one that
/// does not, the fallback tag `sha256-<hex>` names an index of the
/// subject's referrers, which gets this one.
pub async fn add_referrer(
    client: &Client,
    repository: &str,
    subject: &crate::store::Digest,
    referrer: oci_spec::image::Descriptor,
) -> Result<(), RegistryError> {
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    let scope = format!("repository:{repository}:pull,push");
    let url = client.url(&format!("{repository}/referrers/{subject}"));
    let r = client
        .send(&scope, &|h| h.get(&url).header("Accept", INDEX))
        .await?;
    let answers = r.status().is_success()
        && r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with(INDEX));
    if answers {
        return Ok(());
    }
    let tag = format!("{}-{}", subject.algorithm(), subject.hex());
    let url = client.url(&format!("{repository}/manifests/{tag}"));
    let r = client
        .send(&scope, &|h| h.get(&url).header("Accept", INDEX))
        .await?;
    let mut index = match r.status().as_u16() {
        404 => {
            let mut i = oci_spec::image::ImageIndex::default();
            i.set_media_type(Some(oci_spec::image::MediaType::ImageIndex));
            i
        }
        s if (200..300).contains(&s) => {
            let bytes = r.bytes().await.map_err(|e| http(client, &e))?;
            serde_json::from_slice(&bytes).map_err(|e| {
                RegistryError::Manifest(format!("the referrers of {subject} ({tag}): {e}"))
            })?
        }
        s => {
            return Err(RegistryError::status(
                &client.registry,
                repository,
                "referrers tag",
                s,
            ));
        }
    };
    if index
        .manifests()
        .iter()
        .any(|d| d.digest() == referrer.digest())
    {
        return Ok(());
    }
    let mut manifests = index.manifests().clone();
    manifests.push(referrer);
    index.set_manifests(manifests);
    let bytes = serde_json::to_vec(&index)
        .map_err(|e| RegistryError::Manifest(format!("the referrers of {subject}: {e}")))?;
    put_manifest(client, repository, &tag, INDEX, &bytes).await
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The manifest is gone (with every tag naming it).
    Yes,
    /// The registry was not there to delete from (404).
    Absent,
    /// The registry does not allow deletes (405, `UNSUPPORTED`).
    Refused,
}

/// Deletes the manifest `digest` of `repository`.
pub async fn delete_manifest(
    client: &Client,
    repository: &str,
    digest: &Digest,
) -> Result<Deleted, RegistryError> {
    let url = client.url(&format!("{repository}/manifests/{digest}"));
    let scope = format!("repository:{repository}:delete");
    let r = client.send(&scope, &|h| h.delete(&url)).await?;
    match r.status().as_u16() {
        200..=299 => Ok(Deleted::Yes),
        404 => Ok(Deleted::Absent),
        405 => Ok(Deleted::Refused),
        status => Err(RegistryError::status(
            &client.registry,
            repository,
            &format!("delete of manifest {digest}"),
            status,
        )),
    }
}
