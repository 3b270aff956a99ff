//! The last phase of a build: the target stage's state becomes an image
//! in the store (its labels, `created`, diffIDs, manifest annotations) and
//! is tagged.

use super::{BuildError, Options, State};
use crate::image::{self, Image, ImageError, config};
use crate::store::Store;
use oci_spec::image::{Descriptor, MediaType};

/// Writes the image of `state` (the target stage built) and tags it with
/// `opts.tags`; `epoch` is its `created` time when set.
pub(super) fn image(
    store: &Store,
    state: State,
    opts: &Options,
    epoch: Option<i64>,
) -> Result<Image, BuildError> {
    let mut config = state.config;
    for (k, v) in &opts.labels {
        config
            .config
            .labels
            .get_or_insert_with(Default::default)
            .insert(k.clone(), v.clone());
    }
    config.created = Some(config::created_at(epoch));
    config.rootfs.diff_ids = state.layers.iter().map(|(_, d)| d.clone()).collect();
    let layers: Vec<Descriptor> = state.layers.into_iter().map(|(d, _)| d).collect();
    let manifest = match opts.annotations.is_empty() {
        true => image::write_image(store, &config, layers)?,
        false => {
            let config_bytes = serde_json::to_vec(&config)
                .map_err(|e| BuildError::Image(ImageError::Json("image config", e)))?;
            let (digest, size) = store.put_bytes(&config_bytes)?;
            let config = Descriptor::new(MediaType::ImageConfig, size, digest.to_oci());
            image::write_manifest(
                store,
                config,
                layers,
                Some(opts.annotations.iter().cloned().collect()),
            )?
        }
    };
    let image = Image::load(store, &image::manifest_digest(&manifest)?)?;
    for tag in &opts.tags {
        store.tag(&tag.to_string(), manifest.clone())?;
        store.image_event("tag", &image.id.to_string(), &tag.to_string());
    }
    Ok(image)
}
