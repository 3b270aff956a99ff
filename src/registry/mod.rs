//! The OCI distribution protocol: pull and push images (docker's reference
//! rules, manifest lists and platforms, Basic and Bearer auth with docker's
//! credentials), as docker, skopeo and buildah speak it.

pub mod auth;
pub mod client;
pub mod manage;
pub mod pull;
pub mod push;
pub mod reference;

pub use crate::progress::Transfers as Transfer;
pub use auth::{Credentials, DockerConfig};
pub use client::{Client, Options};
pub use reference::Reference;

use crate::image::ImageError;
use crate::store::{Digest, StoreError};
use oci_spec::image::Descriptor;
use std::fmt;
use thiserror::Error;

/// Why a registry operation failed.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The registry could not be reached, or the connection broke.
    #[error("could not talk to {registry}: {message}")]
    Http {
        /// The registry.
        registry: String,
        /// What went wrong.
        message: String,
    },
    /// The registry answered with an error status.
    #[error("{registry} answered {status} to {what}{}", if hint.is_empty() { String::new() } else { format!(": {hint}") })]
    Status {
        /// The registry.
        registry: String,
        /// What was asked.
        what: String,
        /// The HTTP status.
        status: u16,
        /// What to do about it.
        hint: String,
    },
    /// The registry refused something kiln sent.
    #[error("{registry} refused {what} for {repository} ({status}): {body}")]
    Rejected {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What was sent.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's words.
        body: String,
    },
    /// Content that does not match its digest (nothing of it was kept).
    #[error(
        "the {what} does not match its digest: expected {expected}, got {actual}; nothing was stored (the registry's copy is corrupt, or something between altered it)"
    )]
    Digest {
        /// What it was.
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what came.
        actual: Digest,
    },
    /// No image for the platform asked for.
    #[error(
        "{reference} has no image for {platform} (it has: {available}); choose one with --platform"
    )]
    NoPlatform {
        /// The reference.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// What the index offers.
        available: String,
    },
    /// A manifest kiln cannot use.
    #[error("{0}")]
    Manifest(String),
    /// Credentials could not be read or kept.
    #[error("{0}")]
    Credentials(String),
    /// TLS set-up failed (a CA certificate).
    #[error("{0}")]
    Tls(String),
    /// Writing what came failed.
    #[error("{0}")]
    Io(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An image operation failed.
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl RegistryError {
    /// The error for a failed status, with docker-like hints.
    pub fn status(registry: &str, repository: &str, what: &str, status: u16) -> RegistryError {
        let hint = match status {
            401 => format!("not authorized for {repository}: log in with `kiln login {registry}`"),
            403 => format!("access to {repository} is denied: the account lacks the right to it"),
            404 => format!("{repository} has no {what} there: check the name and the tag"),
            429 => "too many requests: wait, or log in for a higher limit".to_string(),
            _ => String::new(),
        };
        RegistryError::Status {
            registry: registry.to_string(),
            what: format!("{what} of {repository}"),
            status,
            hint,
        }
    }
}

/// The platform to pull (`--platform os/arch[/variant]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`.
    pub architecture: String,
    /// `v8`, `v7`.
    pub variant: Option<String>,
}

impl Platform {
    /// This machine's.
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: crate::image::config::host_architecture().into(),
            variant: None,
        }
    }

    /// A platform as a user writes it (`--platform`, the API's
    /// `platform`): aliases normalized as docker does (`aarch64`, `arm`),
    /// then parsed.
    pub fn from_user(text: &str) -> Result<Platform, String> {
        crate::plan::normalize_platform(text).and_then(|p| Platform::parse(&p))
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(format!(
                "invalid platform {text:?}: use os/arch[/variant], such as linux/amd64"
            )),
        }
    }

    /// The index entry for this platform: os and architecture must match;
    /// the variant too when one is asked for.
    pub fn choose<'a>(&self, manifests: &'a [Descriptor]) -> Option<&'a Descriptor> {
        manifests.iter().find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == self.os
                    && p.architecture().to_string() == self.architecture
                    && self
                        .variant
                        .as_ref()
                        .is_none_or(|v| p.variant().as_deref() == Some(v.as_str()))
            })
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}
