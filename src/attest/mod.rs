//! Supply-chain records of a build: SLSA provenance v1 ([`provenance`])
//! and an SPDX 2.3 SBOM ([`sbom`]), each an in-toto v1 statement about one
//! platform's image, stored as BuildKit stores them: an attestation
//! manifest beside the image in its index.

pub mod provenance;
pub mod sbom;

use crate::image::{self, Image, ImageError, index};
use crate::store::{Digest, Store};
use oci_spec::image::{Descriptor, ImageManifest, MediaType};
use serde_json::{Value, json};
use std::collections::HashMap;

/// The media type of an in-toto statement layer.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The in-toto statement type written.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// Which records a build attaches (`--provenance`, `--sbom`, `--attest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attest {
    /// SLSA provenance, and how much of it.
    pub provenance: Option<provenance::Mode>,
    /// An SPDX SBOM of each platform's image.
    pub sbom: bool,
}

impl Attest {
    /// Whether any record is asked for.
    pub fn any(&self) -> bool {
        self.provenance.is_some() || self.sbom
    }
}

/// Something a build read from outside its context (a base image, a
/// remote ADD source), as provenance's `resolvedDependencies` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Material {
    /// `pkg:docker/NAME@TAG?platform=…` or the source URL, credentials
    /// scrubbed.
    pub uri: String,
    /// Its digest: a base's manifest (or index), a download's content.
    pub digest: Digest,
}

/// A URL with any user and password in it, and its query (where
/// presigned URLs carry their signatures and tokens), replaced by `***`:
/// a recorded URL must not carry a credential.
pub fn scrub(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(host_end);
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let fragment = query.split_once('#').map(|(_, f)| format!("#{f}"));
            format!("{path}?***{}", fragment.unwrap_or_default())
        }
        None => tail.to_string(),
    };
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{tail}"),
        None => format!("{scheme}://{authority}{tail}"),
    }
}

/// The statement's subject: the image manifest it is about, named as
/// BuildKit names it (`pkg:docker/NAME@TAG?platform=os%2Farch`).
pub fn subject(name: &str, platform: &str, manifest: &Digest) -> Value {
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (name, "latest"),
    };
    json!([{
        "name": format!("pkg:docker/{repo}@{tag}?platform={}", platform.replace('/', "%2F")),
        "digest": { "sha256": manifest.hex() },
    }])
}

/// Writes the attestation manifest of `statements` (predicate type,
/// statement) about `subject`; returns its index entry.
pub fn write_manifest(
    store: &Store,
    subject: &Descriptor,
    statements: &[(String, Value)],
) -> Result<Descriptor, ImageError> {
    let mut layers = Vec::new();
    let mut digests = Vec::new();
    for (predicate, statement) in statements {
        let bytes =
            serde_json::to_vec(statement).map_err(|e| ImageError::Json("attestation", e))?;
        let (digest, size) = store.put_bytes(&bytes)?;
        let mut d = Descriptor::new(MediaType::from(IN_TOTO), size, digest.to_oci());
        d.set_annotations(Some(HashMap::from([(
            index::PREDICATE_TYPE.to_string(),
            predicate.clone(),
        )])));
        digests.push(digest.to_string());
        layers.push(d);
    }
    // BuildKit's attestation config: no platform, the statements as its
    // "layers".
    let config = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": digests },
    });
    let bytes = serde_json::to_vec(&config).map_err(|e| ImageError::Json("attestation", e))?;
    let (config_digest, config_size) = store.put_bytes(&bytes)?;
    let config = Descriptor::new(MediaType::ImageConfig, config_size, config_digest.to_oci());
    let manifest = image::write_manifest(store, config, layers, None)?;
    Ok(index::attestation_entry(&manifest, subject))
}

/// The statements attached to `image` (an index's image): (predicate
/// type, statement), read back from its index's attestation manifest.
pub fn read(store: &Store, image: &Image) -> Result<Vec<(String, Value)>, ImageError> {
    let Some(digest) = &image.index else {
        return Ok(Vec::new());
    };
    let list = index::read(store, digest)?;
    let mut out = Vec::new();
    for entry in list.manifests().iter().filter(|d| index::is_attestation(d)) {
        let about = entry
            .annotations()
            .as_ref()
            .and_then(|a| a.get(index::REFERENCE_DIGEST));
        if about.map(String::as_str) != Some(&image.manifest_digest.to_string()) {
            continue;
        }
        let m: ImageManifest = store.read_json(&image::manifest_digest(entry)?, "attestation")?;
        for layer in m.layers() {
            let predicate = layer
                .annotations()
                .as_ref()
                .and_then(|a| a.get(index::PREDICATE_TYPE))
                .cloned()
                .unwrap_or_default();
            let statement: Value = store.read_json(&image::manifest_digest(layer)?, "statement")?;
            out.push((predicate, statement));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_scrubbed_from_urls() {
        assert_eq!(
            scrub("https://user:tok@example.com/a.tgz?x=1"),
            "https://***@example.com/a.tgz?***"
        );
        assert_eq!(
            scrub("https://s3.example/b/a.tgz?X-Amz-Signature=abc#f"),
            "https://s3.example/b/a.tgz?***#f"
        );
        assert_eq!(scrub("https://tok@h/p@q"), "https://***@h/p@q");
        assert_eq!(scrub("https://h/p@q"), "https://h/p@q");
        assert_eq!(scrub("not a url"), "not a url");
    }
}
