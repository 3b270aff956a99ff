//! Multi-platform images: an OCI image index in the store naming one
//! manifest per platform, and the attestation manifests BuildKit puts
//! beside them (`vnd.docker.reference.type=attestation-manifest`).
//!
//! Every place that walks what a name reaches (prune's mark, eviction's
//! live set, save, push) goes through [`reachable`] and [`choose`], so an
//! index is never half understood.

use super::{ImageError, Result, manifest_digest};
use crate::registry::Platform;
use crate::store::{Digest, Store};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use std::collections::{BTreeSet, HashMap};

/// The annotation BuildKit marks an attestation manifest's entry with.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// Its value for an attestation manifest.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
/// The annotation naming the image manifest an attestation is about.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// The annotation of an attestation layer naming its predicate type.
pub const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";

/// Docker's media type of a manifest list (an index by another name).
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether a descriptor names an index (OCI's, or docker's manifest list).
pub fn is_index(media: &MediaType) -> bool {
    match media {
        MediaType::ImageIndex => true,
        MediaType::Other(m) => m == DOCKER_LIST,
        _ => false,
    }
}

/// Whether an index entry is an attestation manifest, not an image.
pub fn is_attestation(d: &Descriptor) -> bool {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REFERENCE_TYPE))
        .is_some_and(|t| t == ATTESTATION_MANIFEST)
}

/// An entry's platform as `os/arch[/variant]`.
pub fn platform_of(d: &Descriptor) -> Option<String> {
    let p = d.platform().as_ref()?;
    let mut text = format!("{}/{}", p.os(), p.architecture());
    if let Some(v) = p.variant() {
        text.push('/');
        text.push_str(v);
    }
    Some(text)
}

/// The image manifests of an index (its attestations left out).
pub fn images(index: &ImageIndex) -> Vec<&Descriptor> {
    index
        .manifests()
        .iter()
        .filter(|d| !is_attestation(d) && !is_index(d.media_type()))
        .collect()
}

/// The entry of an index a command uses: the `wanted` platform's, or
/// without one this machine's, else the first image (a foreign image runs
/// through its emulator, as `kiln run` of a one-platform image does).
pub fn choose<'a>(index: &'a ImageIndex, wanted: Option<&Platform>) -> Option<&'a Descriptor> {
    let candidates: Vec<Descriptor> = images(index).into_iter().cloned().collect();
    let pick = |p: &Platform| p.choose(&candidates).map(|d| d.digest().clone());
    let digest = match wanted {
        Some(p) => pick(p)?,
        None => {
            pick(&Platform::host()).or_else(|| candidates.first().map(|d| d.digest().clone()))?
        }
    };
    images(index).into_iter().find(|d| *d.digest() == digest)
}

/// Reads the index stored as `digest`.
pub fn read(store: &Store, digest: &Digest) -> Result<ImageIndex> {
    Ok(store.read_json(digest, "index")?)
}

/// A manifest or an index is small JSON: a blob over this is neither (a
/// hostile entry naming a layer is not read into memory).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// The bytes of the manifest or index `digest`, refused unread when the
/// blob is larger than one can be.
pub fn read_small(store: &Store, digest: &Digest) -> Result<Vec<u8>> {
    let size = std::fs::metadata(store.blob_path(digest))
        .map(|m| m.len())
        .unwrap_or(0);
    if size > MAX_MANIFEST {
        return Err(ImageError::BadArchive(format!(
            "{digest} is named as a manifest but is {size} bytes: not a manifest"
        )));
    }
    Ok(store.read_blob(digest)?)
}

/// Whether `bytes` (a manifest's or an index's) are an index.
pub fn is_index_json(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| {
        p.manifests.is_some()
            || p.media_type
                .is_some_and(|m| is_index(&MediaType::from(m.as_str())))
    })
}

/// Whether the blob `digest` holds an index.
pub fn holds_index(store: &Store, digest: &Digest) -> bool {
    read_small(store, digest).is_ok_and(|b| is_index_json(&b))
}

/// Writes an index over `manifests` (each with its platform, attestations
/// annotated); returns its descriptor (not yet tagged).
pub fn write(store: &Store, manifests: Vec<Descriptor>) -> Result<Descriptor> {
    let mut index = ImageIndex::default();
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(manifests);
    let bytes = serde_json::to_vec(&index).map_err(|e| ImageError::Json("index", e))?;
    let (digest, size) = store.put_bytes(&bytes)?;
    Ok(Descriptor::new(
        MediaType::ImageIndex,
        size,
        digest.to_oci(),
    ))
}

/// An index entry for the image manifest `manifest` built for `platform`
/// (`os/arch[/variant]`).
pub fn entry(manifest: &Descriptor, platform: &str) -> Result<Descriptor> {
    let mut parts = platform.split('/');
    let (os, arch, variant) = (parts.next(), parts.next(), parts.next());
    let mut p = oci_spec::image::PlatformBuilder::default()
        .os(os.unwrap_or("linux"))
        .architecture(arch.unwrap_or_default());
    if let Some(v) = variant {
        p = p.variant(v.to_string());
    }
    let p = p
        .build()
        .map_err(|e| ImageError::BadArchive(format!("platform {platform}: {e}")))?;
    let mut d = Descriptor::new(
        MediaType::ImageManifest,
        manifest.size(),
        manifest.digest().clone(),
    );
    d.set_platform(Some(p));
    Ok(d)
}

/// The index entry of an attestation manifest about `subject`, as
/// BuildKit writes it (platform `unknown/unknown`).
pub fn attestation_entry(attestation: &Descriptor, subject: &Descriptor) -> Descriptor {
    let mut d = Descriptor::new(
        MediaType::ImageManifest,
        attestation.size(),
        attestation.digest().clone(),
    );
    d.set_platform(Some(
        oci_spec::image::PlatformBuilder::default()
            .os("unknown")
            .architecture("unknown")
            .build()
            .expect("a platform of two names"),
    ));
    d.set_annotations(Some(HashMap::from([
        (REFERENCE_TYPE.to_string(), ATTESTATION_MANIFEST.to_string()),
        (REFERENCE_DIGEST.to_string(), subject.digest().to_string()),
    ])));
    d
}

/// Adds every blob `d` reaches to `blobs` (the entry's own too, an
/// index's children, each manifest's config and layers) and each image's
/// layer diffIDs to `diff_ids`. A blob that cannot be read is an error,
/// returned once every other child was walked: a collector must not
/// delete what it could not walk, nor what a broken sibling's walk would
/// have skipped. An index inside an index is refused (kiln never writes
/// one; a hostile archive's nesting would be walked without end).
pub fn reachable(
    store: &Store,
    d: &Descriptor,
    blobs: &mut BTreeSet<Digest>,
    diff_ids: &mut BTreeSet<Digest>,
) -> Result<()> {
    walk(store, d, blobs, diff_ids, false)
}

fn walk(
    store: &Store,
    d: &Descriptor,
    blobs: &mut BTreeSet<Digest>,
    diff_ids: &mut BTreeSet<Digest>,
    in_index: bool,
) -> Result<()> {
    let digest = manifest_digest(d)?;
    if !blobs.insert(digest.clone()) {
        return Ok(());
    }
    let bytes = read_small(store, &digest)?;
    if is_index(d.media_type()) || is_index_json(&bytes) {
        if in_index {
            return Err(ImageError::BadArchive(format!(
                "index {digest} is inside another index: not supported"
            )));
        }
        let list: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::BadArchive(format!("index {digest}: {e}")))?;
        let mut first_error = None;
        for child in list.manifests() {
            if let Err(e) = walk(store, child, blobs, diff_ids, true) {
                first_error.get_or_insert(e);
            }
        }
        return first_error.map_or(Ok(()), Err);
    }
    let manifest: ImageManifest = serde_json::from_slice(&bytes)
        .map_err(|e| ImageError::BadArchive(format!("manifest {digest}: {e}")))?;
    let config = manifest_digest(manifest.config())?;
    blobs.insert(config.clone());
    for layer in manifest.layers() {
        blobs.insert(manifest_digest(layer)?);
    }
    // An image's config lists its layers' diffIDs; an attestation's
    // config is not an image's and lists none.
    if manifest.config().media_type() == &MediaType::ImageConfig
        || matches!(manifest.config().media_type(), MediaType::Other(m) if m == "application/vnd.docker.container.image.v1+json")
    {
        let config: super::ImageConfig = store.read_json(&config, "image config")?;
        diff_ids.extend(config.rootfs.diff_ids);
    }
    Ok(())
}

/// The images of `index` whose blobs are all in the store (an archive or
/// a pull may bring some platforms only), as [`choose`] takes them.
pub fn present(store: &Store, index: &ImageIndex) -> ImageIndex {
    let mut out = index.clone();
    out.set_manifests(
        images(index)
            .into_iter()
            .filter(|d| complete(store, d))
            .cloned()
            .collect(),
    );
    out
}

/// The config digests (image ids) of every image `d` names: an index's
/// each, or the one (what a container may have been made from).
pub fn ids(store: &Store, d: &Descriptor) -> Vec<String> {
    let Some(digest) = Digest::from_oci(d.digest()) else {
        return Vec::new();
    };
    let Ok(bytes) = read_small(store, &digest) else {
        return Vec::new();
    };
    let manifests: Vec<Descriptor> = match is_index_json(&bytes) {
        true => serde_json::from_slice::<ImageIndex>(&bytes)
            .map(|i| images(&i).into_iter().cloned().collect())
            .unwrap_or_default(),
        false => vec![d.clone()],
    };
    manifests
        .iter()
        .filter_map(|m| {
            let digest = Digest::from_oci(m.digest())?;
            let manifest: ImageManifest =
                serde_json::from_slice(&read_small(store, &digest).ok()?).ok()?;
            Some(manifest.config().digest().to_string())
        })
        .collect()
}

/// Writes an index naming `images`, each with its platform (of two of
/// one platform, the later), and keeping those of `attestations` whose
/// image is still named (`kiln manifest create|add`).
pub fn of_images(
    store: &Store,
    images: &[super::Image],
    attestations: Vec<Descriptor>,
) -> Result<Descriptor> {
    let mut entries: Vec<(String, Descriptor)> = Vec::new();
    for image in images {
        let platform = image.platform();
        entries.retain(|(p, _)| *p != platform);
        entries.push((
            platform.clone(),
            entry(&image.manifest_descriptor(store), &platform)?,
        ));
    }
    let mut manifests: Vec<Descriptor> = entries.into_iter().map(|(_, d)| d).collect();
    let named: Vec<String> = manifests.iter().map(|d| d.digest().to_string()).collect();
    manifests.extend(attestations.into_iter().filter(|a| {
        a.annotations()
            .as_ref()
            .and_then(|x| x.get(REFERENCE_DIGEST))
            .is_some_and(|d| named.contains(d))
    }));
    write(store, manifests)
}

/// Whether every blob `d` reaches is in the store (an archive or a
/// registry may hold one platform of an index only).
pub fn complete(store: &Store, d: &Descriptor) -> bool {
    let (mut blobs, mut diff_ids) = (BTreeSet::new(), BTreeSet::new());
    reachable(store, d, &mut blobs, &mut diff_ids).is_ok()
        && blobs.iter().all(|b| store.has_blob(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platformed(digest: &str, platform: &str) -> Descriptor {
        let m = Descriptor::new(
            MediaType::ImageManifest,
            1,
            oci_spec::image::Digest::try_from(format!("sha256:{}", digest.repeat(64))).unwrap(),
        );
        entry(&m, platform).unwrap()
    }

    #[test]
    fn choose_takes_the_wanted_then_this_machine_then_the_first_image() {
        let host = Platform::host().to_string();
        let other = if host == "linux/arm64" {
            "linux/amd64"
        } else {
            "linux/arm64"
        };
        let a = platformed("a", other);
        let b = platformed("b", &host);
        let att = attestation_entry(&platformed("c", other), &a);
        let mut index = ImageIndex::default();
        index.set_manifests(vec![att.clone(), a.clone(), b.clone()]);
        assert_eq!(choose(&index, None), Some(&b));
        assert_eq!(
            choose(&index, Some(&Platform::parse(other).unwrap())),
            Some(&a)
        );
        assert_eq!(
            choose(&index, Some(&Platform::parse("linux/riscv64").unwrap())),
            None
        );
        index.set_manifests(vec![att.clone(), a.clone()]);
        assert_eq!(choose(&index, None), Some(&a), "no host image: the first");
        assert_eq!(images(&index), vec![&a], "attestations are not images");
        assert!(is_attestation(&att));
        assert_eq!(platform_of(&a).as_deref(), Some(other));
    }

    #[test]
    fn an_index_naming_itself_or_a_missing_child_is_walked_once_and_said() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        // An index whose child is an index naming a missing manifest.
        let missing = platformed("e", "linux/amd64");
        let inner = write(&store, vec![missing]).unwrap();
        let outer = write(&store, vec![inner.clone(), inner.clone()]).unwrap();
        let (mut blobs, mut diffs) = (BTreeSet::new(), BTreeSet::new());
        assert!(reachable(&store, &outer, &mut blobs, &mut diffs).is_err());
        assert!(!complete(&store, &outer));
        // Nothing to choose: no image entry, and a child index is none.
        assert_eq!(
            choose(
                &read(&store, &manifest_digest(&outer).unwrap()).unwrap(),
                None
            ),
            None
        );
    }
}
