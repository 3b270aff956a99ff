//! A build for several platforms (`--platform linux/amd64,linux/arm64`)
//! and the records beside it: one image index naming each platform's
//! image, and an attestation manifest per image when provenance or an
//! SBOM is asked for (BuildKit's layout).
//!
//! Platforms are built side by side, as many as there are cores. A
//! `FROM --platform=$BUILDPLATFORM` stage that does not read the target's
//! args is the same steps for every target: one build runs each of its
//! steps while the others wait on the step's key, then find it cached.

use super::{BuildError, BuildReport as Report, Options, build};
use crate::attest::{self, Attest, provenance};
use crate::dockerfile::Source;
use crate::image::{self, Image, index};
use crate::progress::Progress;
use crate::store::Store;

/// One platform's result.
#[derive(Debug, Clone)]
pub struct Built {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Its image (not tagged).
    pub image: Image,
    /// What its build read.
    pub report: Report,
}

/// Builds `source` for each of `platforms` (normalized); nothing is tagged.
pub fn build_each(
    store: &Store,
    source: &Source,
    opts: &Options,
    platforms: &[String],
    progress: &Progress,
) -> Result<Vec<Built>, BuildError> {
    let host = crate::plan::host_platform();
    let one = |platform: &String| -> Result<Built, BuildError> {
        let one = Options {
            platform: (*platform != host).then(|| platform.clone()),
            tags: Vec::new(),
            label: (platforms.len() > 1).then(|| platform.clone()),
            ..opts.clone()
        };
        let (image, report) = build(store, source, &one, progress)?;
        Ok(Built {
            platform: platform.clone(),
            image,
            report,
        })
    };
    // As many platforms at once as there are cores; a step two of them
    // share (a `$BUILDPLATFORM` stage's) runs once, the other waiting
    // for it and finding it cached (see `key_lock`).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut built = Vec::new();
    for chunk in platforms.chunks(cores.max(1)) {
        let results: Vec<Result<Built, BuildError>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk.iter().map(|p| s.spawn(|| one(p))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        for r in results {
            built.push(r?);
        }
    }
    Ok(built)
}

/// Writes one index of `built` with the records `attest` asks for (each
/// platform's provenance from `inputs` and its report; its SBOM from its
/// image's package databases), tags it with `opts.tags`, and returns the
/// image this machine uses from it.
pub fn assemble(
    store: &Store,
    built: &[Built],
    opts: &Options,
    attest: &Attest,
    inputs: &provenance::Inputs,
) -> Result<Image, BuildError> {
    let name = opts
        .tags
        .first()
        .map(|t| t.to_string())
        .unwrap_or_else(|| "image".to_string());
    let mut entries = Vec::new();
    let mut attestations = Vec::new();
    for b in built {
        // The index names each image as it leaves the store (gzip layers,
        // as a push or a save makes them): the digests its attestations
        // are about are then the registry's too.
        let manifest =
            image::compress::exported_manifest(store, &b.image, crate::layer::Compression::Gzip)?;
        let exported = Image::load(store, &image::manifest_digest(&manifest)?)?;
        entries.push(index::entry(&manifest, &b.platform)?);
        if !attest.any() {
            continue;
        }
        let subject = attest::subject(&name, &b.platform, &exported.manifest_digest);
        let mut statements = Vec::new();
        if let Some(mode) = attest.provenance {
            let inputs = provenance::Inputs {
                platform: b.platform.clone(),
                materials: b.report.materials.clone(),
                started: b.report.started.clone(),
                finished: b.report.finished.clone(),
                // `--verify-repro` checked one platform's image.
                verified: inputs
                    .verified
                    .clone()
                    .filter(|v| v["platform"] == b.platform.as_str()),
                ..inputs.clone()
            };
            statements.push((
                provenance::PREDICATE.to_string(),
                provenance::statement(subject.clone(), &inputs, mode),
            ));
        }
        if attest.sbom {
            let packages = attest::sbom::scan(store, &b.image)?;
            let document = attest::sbom::document(&b.image, &name, &packages, &b.report.finished);
            statements.push((
                attest::sbom::PREDICATE.to_string(),
                serde_json::json!({
                    "_type": attest::STATEMENT_V1,
                    "subject": subject,
                    "predicateType": attest::sbom::PREDICATE,
                    "predicate": document,
                }),
            ));
        }
        attestations.push(attest::write_manifest(store, &manifest, &statements)?);
    }
    entries.extend(attestations);
    let written = index::write(store, entries)?;
    let image = Image::load(store, &image::manifest_digest(&written)?)?;
    for tag in &opts.tags {
        store.tag(&tag.to_string(), written.clone())?;
        store.image_event("tag", &image.id.to_string(), &tag.to_string());
    }
    Ok(image)
}
