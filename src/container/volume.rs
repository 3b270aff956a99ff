//! Volumes: data beyond a container, in the store (`volumes/NAME/_data`),
//! mounted with `-v NAME:/path`. A named volume is made on first use and,
//! new and empty, gets the image's content at its path (docker's copy-up);
//! a VOLUME of the image gets an anonymous one, removed with its container
//! by `rm -v`. Volumes survive `kiln rm` and `kiln prune`; one a container
//! uses is not removed.

use super::{Container, ContainerError, io_err};
use crate::copier::{self, CopyOptions, Take};
use crate::image::Image;
use crate::sandbox::fs::Root;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A volume as `volume inspect` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Volume {
    /// Its name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Where its data is.
    #[serde(rename = "Mountpoint")]
    pub mountpoint: PathBuf,
    /// When it was made.
    #[serde(rename = "CreatedAt")]
    pub created: String,
    /// Always `local`.
    #[serde(rename = "Driver")]
    pub driver: String,
    /// True for a VOLUME's volume made for one container.
    #[serde(rename = "Anonymous", default)]
    pub anonymous: bool,
    /// Its labels (`--label`, the API's `Labels`).
    #[serde(rename = "Labels", default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

fn dir(store: &Store) -> PathBuf {
    store.volumes().dir().to_path_buf()
}

/// What one `-v` (or the API's `Binds` entry) asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Flag {
    /// `NAME:/path[:ro|rw]`: a volume in the store (name, path, read-only).
    Named(String, String, bool),
    /// `/host:/path[:ro|rw]`: a host path.
    Bind(crate::sandbox::Bind),
    /// `/path`: an anonymous volume there.
    Anonymous(String),
}

/// Parses `-v NAME:/PATH[:ro|rw]`, `-v HOST:CONTAINER[:ro|rw]` or `-v /PATH`.
pub fn parse_flag(v: &str) -> Result<Flag, String> {
    let parts: Vec<&str> = v.split(':').collect();
    if let [target] = parts.as_slice()
        && target.starts_with('/')
    {
        return Ok(Flag::Anonymous(target.to_string()));
    }
    if let [name, target, rest @ ..] = parts.as_slice()
        && !name.starts_with('/')
        && !name.starts_with('.')
    {
        let mode = rest.first().copied().unwrap_or("rw");
        if !valid_name(name)
            || !target.starts_with('/')
            || rest.len() > 1
            || !["ro", "rw"].contains(&mode)
        {
            return Err(format!(
                "invalid volume {v:?}: use NAME:/PATH[:ro|rw] (a name of [a-zA-Z0-9][a-zA-Z0-9_.-]) or HOST:CONTAINER[:ro|rw]"
            ));
        }
        return Ok(Flag::Named(
            name.to_string(),
            target.to_string(),
            mode == "ro",
        ));
    }
    let (source, target, mode) = match parts.as_slice() {
        [s, t] => (*s, *t, "rw"),
        [s, t, m] => (*s, *t, *m),
        _ => return Err(format!("invalid volume {v:?}: use HOST:CONTAINER[:ro|rw]")),
    };
    if !source.starts_with('/') || !target.starts_with('/') || !["ro", "rw"].contains(&mode) {
        return Err(format!(
            "invalid volume {v:?}: both paths must be absolute, the mode ro or rw"
        ));
    }
    Ok(Flag::Bind(crate::sandbox::Bind {
        source: source.into(),
        target: target.into(),
        read_only: mode == "ro",
        // A host path the user named: followed as docker follows it.
        exact: false,
        // No device node made in it opens a host device.
        nodev: true,
        movable: false,
    }))
}

/// Makes a bind's missing host directory, as docker does.
pub fn ensure_source(b: &crate::sandbox::Bind) -> Result<(), ContainerError> {
    if !b.source.exists() {
        std::fs::create_dir_all(&b.source).map_err(io_err("creating", &b.source))?;
    }
    Ok(())
}

/// True for a name docker accepts for a volume.
pub fn valid_name(name: &str) -> bool {
    super::valid_name(name)
}

/// The volume `name`, if it exists.
pub fn get(store: &Store, name: &str) -> Option<Volume> {
    if !valid_name(name) {
        return None;
    }
    let bytes = std::fs::read(dir(store).join(name).join("volume.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Makes volume `name` (a fresh anonymous name when None); an existing
/// one is returned as it is. The bool is true when it was made now.
pub fn create(store: &Store, name: Option<&str>) -> Result<(Volume, bool), ContainerError> {
    create_labelled(store, name, Default::default())
}

/// [`create`] with labels (kept only when the volume is new, as docker).
pub fn create_labelled(
    store: &Store,
    name: Option<&str>,
    labels: std::collections::BTreeMap<String, String>,
) -> Result<(Volume, bool), ContainerError> {
    let (name, anonymous) = match name {
        Some(n) if !valid_name(n) => {
            return Err(ContainerError::Invalid(format!(
                "create {n}: \"{n}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
            )));
        }
        Some(n) => (n.to_string(), false),
        None => (super::random_id(), true),
    };
    if let Some(v) = get(store, &name) {
        return Ok((v, false));
    }
    let home = dir(store).join(&name);
    let data = home.join("_data");
    std::fs::create_dir_all(&data).map_err(io_err("creating", &data))?;
    let v = Volume {
        name,
        mountpoint: data,
        created: super::state::now(),
        driver: "local".into(),
        anonymous,
        labels,
    };
    let path = home.join("volume.json");
    let bytes = serde_json::to_vec_pretty(&v).map_err(|e| io_err("writing", &path)(e.into()))?;
    std::fs::write(&path, bytes).map_err(io_err("writing", &path))?;
    crate::events::record(
        store.root(),
        crate::events::Kind::Volume,
        "create",
        &v.name,
        [("driver".into(), "local".into())],
    );
    Ok((v, true))
}

/// Every volume, by name.
pub fn list(store: &Store) -> Vec<Volume> {
    let mut out: Vec<Volume> = std::fs::read_dir(dir(store))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| get(store, &e.file_name().to_string_lossy()))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The containers that mount volume `v`.
pub fn users(store: &Store, v: &Volume) -> Vec<Container> {
    super::list(store)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.record.spec.binds.iter().any(|b| b.source == v.mountpoint))
        .collect()
}

/// Removes volume `name` of the store at `root` (an ended `--rm`
/// container's anonymous one, which no other container mounts).
pub fn remove_at(root: &Path, name: &str) {
    if !valid_name(name) {
        return;
    }
    if let Ok(dir) = crate::store::layout::volume(root, name) {
        super::remove_dir(&dir);
    }
    crate::events::record(root, crate::events::Kind::Volume, "destroy", name, []);
}

/// Removes volume `name`: refused while a container (running or not)
/// mounts it, unless `force`.
pub fn remove(store: &Store, name: &str, force: bool) -> Result<(), ContainerError> {
    let v = get(store, name)
        .ok_or_else(|| ContainerError::Invalid(format!("get {name}: no such volume")))?;
    let using = users(store, &v);
    if !using.is_empty() && !force {
        return Err(ContainerError::Invalid(format!(
            "remove {name}: volume is in use - [{}]",
            using
                .iter()
                .map(|c| c.record.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    super::remove_dir(&dir(store).join(name));
    crate::events::record(
        store.root(),
        crate::events::Kind::Volume,
        "destroy",
        name,
        [],
    );
    Ok(())
}

/// Removes every volume no container mounts (anonymous ones only unless
/// `all`, as docker's `volume prune`); their names.
pub fn prune(store: &Store, all: bool) -> Vec<String> {
    let mut removed = Vec::new();
    for v in list(store) {
        if (all || v.anonymous) && users(store, &v).is_empty() {
            super::remove_dir(&dir(store).join(&v.name));
            crate::events::record(
                store.root(),
                crate::events::Kind::Volume,
                "destroy",
                &v.name,
                [],
            );
            removed.push(v.name);
        }
    }
    removed
}

/// Copies what `image` holds at `path` into the new volume `v` (docker's
/// copy-up): the image is flattened into a scratch directory (every path
/// resolved inside it), and the tree at `path` copied with its owners,
/// modes and times.
pub fn copy_up(store: &Store, image: &Image, path: &str, v: &Volume) -> Result<(), ContainerError> {
    let scratch = store.temp_path("copy-up");
    let result = (|| {
        image.export_rootfs(store, &scratch)?;
        let src = Root::open(&scratch).map_err(io_err("opening", &scratch))?;
        let rel = path.trim_start_matches('/');
        if !src.stat(rel).is_ok_and(|m| m.is_dir()) {
            return Ok(());
        }
        let dst = Root::open(&v.mountpoint).map_err(io_err("opening", &v.mountpoint))?;
        let links = Default::default();
        let opts = CopyOptions {
            owner: None,
            mode: None,
            take: &|_| Take::Entry,
            links: &links,
        };
        // The directory's content goes in, entry by entry (the volume's
        // root is the volume's own).
        for name in src.read_dir(rel).map_err(io_err("reading", &scratch))? {
            let name = name.to_string_lossy();
            copier::copy_tree(&src, &format!("{rel}/{name}"), &dst, &name, &opts)
                .map_err(io_err("copying into", &v.mountpoint))?;
        }
        Ok(())
    })();
    let _ = crate::sandbox::fs::remove_dir_all(&scratch);
    result
}

/// True when `dir` holds nothing.
pub fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}
