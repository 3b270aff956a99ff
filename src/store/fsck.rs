//! `kiln fsck`: verify every blob's digest, every reference from the index
//! down to configs and layers, and every snapshot, like `git fsck`.

use super::{Digest, Result, Store, StoreError, ref_name};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;

/// One thing wrong with a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A blob whose content does not hash to its name.
    Corrupt {
        /// The name it is stored under.
        digest: Digest,
        /// What its content hashes to.
        actual: Digest,
    },
    /// A blob something refers to that is not there.
    Missing {
        /// The missing blob.
        digest: Digest,
        /// Who refers to it (a tag or a manifest digest).
        by: String,
    },
    /// A manifest or index that does not parse.
    Unreadable {
        /// The blob.
        digest: Digest,
        /// Why.
        reason: String,
    },
    /// A file in blobs/ or snapshots/ whose name is not a digest.
    Stray(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Corrupt { digest, actual } => {
                write!(f, "corrupt blob {digest}: content hashes to {actual}")
            }
            Problem::Missing { digest, by } => {
                write!(f, "missing blob {digest}, referenced by {by}")
            }
            Problem::Unreadable { digest, reason } => {
                write!(f, "unreadable manifest {digest}: {reason}")
            }
            Problem::Stray(path) => {
                write!(f, "stray entry {path}: its name is not a sha256 digest")
            }
        }
    }
}

/// What fsck looked at.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Blobs whose digest was verified.
    pub blobs: usize,
    /// Tags followed.
    pub tags: usize,
    /// Snapshot directories checked.
    pub snapshots: usize,
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
}

/// Checks the whole store.
pub fn fsck(store: &Store) -> Result<Report> {
    let mut report = Report::default();
    let blob_dir = store.root().join("blobs/sha256");
    let mut present = BTreeSet::new();
    for entry in fs::read_dir(&blob_dir).map_err(super::io_err("reading", &blob_dir))? {
        let entry = entry.map_err(super::io_err("reading", &blob_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
            report
                .problems
                .push(Problem::Stray(format!("blobs/sha256/{name}")));
            continue;
        };
        let mut reader = store.open_blob(&digest)?;
        match io::copy(&mut reader, &mut io::sink()) {
            Ok(_) => {}
            Err(e) => match reader.error(e) {
                StoreError::DigestMismatch { actual, .. } => {
                    report.problems.push(Problem::Corrupt {
                        digest: digest.clone(),
                        actual,
                    })
                }
                other => return Err(other),
            },
        }
        report.blobs += 1;
        present.insert(digest);
    }

    let index = store.index()?;
    for d in index.manifests() {
        report.tags += 1;
        let by = ref_name(d).map_or_else(|| "index.json".to_string(), |n| format!("tag {n}"));
        check_descriptor(store, d, &by, &present, &mut report);
    }

    let snap_dir = store.root().join("snapshots");
    for entry in fs::read_dir(&snap_dir).map_err(super::io_err("reading", &snap_dir))? {
        let entry = entry.map_err(super::io_err("reading", &snap_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir || format!("sha256:{name}").parse::<Digest>().is_err() {
            report
                .problems
                .push(Problem::Stray(format!("snapshots/{name}")));
            continue;
        }
        report.snapshots += 1;
    }
    Ok(report)
}

fn check_descriptor(
    store: &Store,
    d: &Descriptor,
    by: &str,
    present: &BTreeSet<Digest>,
    report: &mut Report,
) {
    let Some(digest) = Digest::from_oci(d.digest()) else {
        report.problems.push(Problem::Unreadable {
            digest: Digest::of(d.digest().to_string().as_bytes()),
            reason: format!("unsupported digest {} in {by}", d.digest()),
        });
        return;
    };
    if !present.contains(&digest) {
        report.problems.push(Problem::Missing {
            digest,
            by: by.to_string(),
        });
        return;
    }
    let unreadable = |reason: String| Problem::Unreadable {
        digest: digest.clone(),
        reason,
    };
    match d.media_type() {
        MediaType::ImageManifest | MediaType::Other(_) if is_manifest(d.media_type()) => {
            let manifest: ImageManifest = match store.read_json(&digest, "manifest") {
                Ok(m) => m,
                Err(e) => return report.problems.push(unreadable(e.to_string())),
            };
            let by = format!("manifest {digest}");
            for child in std::iter::once(manifest.config()).chain(manifest.layers()) {
                match Digest::from_oci(child.digest()) {
                    Some(c) if present.contains(&c) => {}
                    Some(c) => report.problems.push(Problem::Missing {
                        digest: c,
                        by: by.clone(),
                    }),
                    None => report
                        .problems
                        .push(unreadable(format!("unsupported digest {}", child.digest()))),
                }
            }
        }
        MediaType::ImageIndex => {
            let index: ImageIndex = match store.read_json(&digest, "index") {
                Ok(i) => i,
                Err(e) => return report.problems.push(unreadable(e.to_string())),
            };
            let by = format!("index {digest}");
            for child in index.manifests() {
                check_descriptor(store, child, &by, present, report);
            }
        }
        _ => {}
    }
}

fn is_manifest(media: &MediaType) -> bool {
    match media {
        MediaType::ImageManifest => true,
        MediaType::Other(m) => m == "application/vnd.docker.distribution.manifest.v2+json",
        _ => false,
    }
}
