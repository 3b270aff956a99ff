//! `RUN --mount`: cache directories kept in the store between builds, bind
//! mounts of the context or another stage, tmpfs, and secrets. A secret's
//! value never reaches a layer, the cache key or the history; the mount
//! points a step had to create are removed from its diff, as BuildKit does.

use super::copy::layers_of;
use super::{Builder, Secret, State, StepCx, StepError, fail, hash};
use crate::context::digest::StatCache;
use crate::copier::{self, CopyOptions};
use crate::dockerfile::instructions;
use crate::dockerfile::mount::{MountType, Sharing};
use crate::sandbox::fs::{Root, remove_dir_all};
use crate::sandbox::{Bind, Tmpfs};
use crate::store::Store;
use std::fs;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::{Path, PathBuf};

/// What a RUN's mounts amount to.
#[derive(Default)]
pub(super) struct Mounts {
    /// Bind mounts (cache dirs, binds, secret files).
    pub binds: Vec<Bind>,
    /// tmpfs mounts.
    pub tmpfs: Vec<Tmpfs>,
    /// Secrets exposed as environment variables.
    pub env: Vec<String>,
    /// What goes into the cache key.
    pub key: String,
    /// Mount targets (removed from the diff when the step created them).
    pub targets: Vec<String>,
    /// Temporary copies, removed with this value.
    temps: Vec<PathBuf>,
    /// Locks of `sharing=locked|private` cache mounts, held until the step
    /// is done.
    locks: Vec<fs::File>,
}

impl Mounts {
    /// A bind mount whose target, if the step had to create it, is removed
    /// from the step's diff.
    fn bind(
        &mut self,
        source: PathBuf,
        target: String,
        read_only: bool,
        exact: bool,
        movable: bool,
    ) {
        self.binds.push(Bind {
            source,
            target: target.clone(),
            read_only,
            exact,
            nodev: true,
            movable,
        });
        self.targets.push(target);
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for t in self.temps.drain(..) {
            let _ = if t.is_dir() {
                remove_dir_all(&t)
            } else {
                fs::remove_file(&t)
            };
        }
    }
}

/// Prepares the mounts of `run`.
pub(super) fn prepare(
    b: &Builder,
    cx: &StepCx,
    state: &State,
    run: &instructions::Run,
) -> Result<Mounts, StepError> {
    let (store, built, stages, opts) = (b.store, cx.built, b.stages(), b.opts);
    let (context, flattened) = (&b.prepared.context, &b.flattened);
    let vars = super::variables(state);
    let expand = |w: &str| super::expand_word(&vars, b.escape(), w);
    let mut out = Mounts::default();
    let mut key = Vec::new();
    for m in &run.mounts {
        let expanded;
        let m = match &m.deferred {
            Some(raw) => {
                expanded = crate::dockerfile::mount::parse(&expand(raw)?)
                    .map_err(|e| fail(format!("invalid --mount: {e}")))?;
                &expanded
            }
            None => m,
        };
        let target = m
            .target
            .as_deref()
            .map(&expand)
            .transpose()?
            .map(|t| clean_target(&state.in_workdir(&t)));
        match m.kind {
            MountType::Cache => {
                let target = target.expect("a cache mount has a target");
                let id = expand(m.id.as_deref().unwrap_or(&target))?;
                // Owner and mode make another cache, as BuildKit keys a
                // cache mount by its id and how its directory is prepared.
                let name = match (m.uid, m.gid, m.mode) {
                    (None, None, None) => hash(&[&id]),
                    (u, g, mode) => hash(&[&id, &format!("{u:?} {g:?} {mode:?}")]),
                };
                let mut dir =
                    super::cache::mount_dir(store, &name).map_err(|e| fail(e.to_string()))?;
                let io_fail = |e: std::io::Error| fail(format!("cache mount {id}: {e}"));
                // sharing=locked waits for the mount; sharing=private gets
                // a new, empty one while another step holds it; shared
                // mounts take no lock at all.
                if m.sharing != Sharing::Shared {
                    fs::create_dir_all(dir.parent().unwrap_or(&dir)).map_err(io_fail)?;
                    let lock = fs::File::options()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(dir.with_extension("lock"))
                        .map_err(io_fail)?;
                    if m.sharing == Sharing::Locked {
                        lock.lock().map_err(io_fail)?;
                        out.locks.push(lock);
                    } else if lock.try_lock().is_ok() {
                        out.locks.push(lock);
                    } else {
                        dir = store.temp_path("private-cache");
                        out.temps.push(dir.clone());
                    }
                }
                if !dir.exists() {
                    fs::create_dir_all(&dir).map_err(io_fail)?;
                    let _ = fs::set_permissions(
                        &dir,
                        fs::Permissions::from_mode(m.mode.unwrap_or(0o755)),
                    );
                    let _ = lchown(&dir, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)));
                }
                // A use: eviction (`evict::fit`) goes by this time.
                let _ = filetime::set_file_mtime(&dir, filetime::FileTime::now());
                if !out.temps.contains(&dir) {
                    b.report
                        .cache_mounts
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name);
                }
                key.push(format!("cache {id} {target} {}", m.read_only));
                // A cache is the store's own: with --isolation=chroot it is moved
                // into the step's root (a crash loses a cache, nothing else).
                out.bind(dir, target, m.read_only, false, true);
            }
            MountType::Bind => {
                let target = target.expect("a bind mount has a target");
                let source = expand(m.source.as_deref().unwrap_or("."))?;
                let root = match &m.from {
                    Some(from) => flattened
                        .get(store, built, stages, cx.stage, &expand(from)?)
                        .map_err(fail)?,
                    None => context.clone(),
                };
                // The source is resolved inside its root (the context, or
                // the stage): a symlink in it leads nowhere else.
                let not_found = |e: std::io::Error| {
                    fail(format!(
                        "--mount source {source:?} not found in the {}: {e}",
                        if m.from.is_some() {
                            "source stage"
                        } else {
                            "build context"
                        }
                    ))
                };
                let rel = root.resolve(&source).map_err(not_found)?;
                let path = root.real_path(&rel).map_err(not_found)?;
                key.push(format!(
                    "bind {source} {target} {:?} {}",
                    m.from,
                    StatCache::none().tree_digest(&path, &|_| false, &|m, _| m)
                ));
                let source_path = if m.read_only {
                    path
                } else {
                    // Writes to a read-write bind are discarded, never made
                    // to the context: bind a copy.
                    let copy = store.temp_path("bind");
                    out.temps.push(copy.clone());
                    let copied = Root::create(&copy).and_then(|dst| {
                        let opts = CopyOptions {
                            owner: None,
                            mode: None,
                            take: &|_| copier::Take::Entry,
                            links: &copier::Links::default(),
                        };
                        copier::copy_tree(&root, &rel, &dst, "src", &opts)?;
                        dst.real_path("src")
                    });
                    copied.map_err(|e| fail(format!("--mount source {source:?}: {e}")))?
                };
                // A read-write bind is kiln's own copy: movable.
                out.bind(source_path, target, m.read_only, true, !m.read_only);
            }
            MountType::Tmpfs => {
                let target = target.expect("a tmpfs mount has a target");
                key.push(format!("tmpfs {target} {:?}", m.size));
                out.tmpfs.push(Tmpfs {
                    target: target.clone(),
                    size: m.size,
                });
                out.targets.push(target);
            }
            MountType::Secret => {
                let id = m.id.clone().unwrap_or_default();
                let value = match opts.secrets.iter().find(|(i, _)| *i == id).map(|(_, s)| s) {
                    Some(Secret::File(path)) => fs::read(path).map_err(|e| {
                        fail(format!("secret {id}: reading {}: {e}", path.display()))
                    })?,
                    Some(Secret::Env(var)) => std::env::var(var)
                        .map_err(|_| {
                            fail(format!(
                                "secret {id}: environment variable {var} is not set"
                            ))
                        })?
                        .into_bytes(),
                    None if m.required => {
                        return Err(fail(format!(
                            "secret {id} is required but was not provided: pass --secret id={id},src=FILE"
                        )));
                    }
                    None => continue,
                };
                // Only the id and where it goes enter the key, never the value.
                key.push(format!("secret {id} {target:?} {:?}", m.env));
                if let Some(var) = &m.env {
                    out.env
                        .push(format!("{var}={}", String::from_utf8_lossy(&value)));
                }
                if let Some(target) = target {
                    let file = store.temp_path("secret");
                    fs::write(&file, &value).map_err(|e| fail(format!("secret {id}: {e}")))?;
                    let _ = fs::set_permissions(
                        &file,
                        fs::Permissions::from_mode(m.mode.unwrap_or(0o400)),
                    );
                    let _ = lchown(&file, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)));
                    out.temps.push(file.clone());
                    out.bind(file, target, true, false, false);
                }
            }
            MountType::Ssh => {
                let id = m.id.clone().unwrap_or_else(|| "default".into());
                let target = target.unwrap_or_else(|| "/run/buildkit/ssh_agent.0".into());
                let Some((_, socket)) = opts.ssh.iter().find(|(i, _)| *i == id) else {
                    if m.required {
                        return Err(fail(format!(
                            "ssh {id} is required but was not forwarded: pass --ssh {id}[=SOCKET]"
                        )));
                    }
                    continue;
                };
                // The agent's socket is bound in; the key is the id and
                // where it goes, never anything of the agent's.
                key.push(format!("ssh {id} {target}"));
                if !out.env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                    out.env.push(format!("SSH_AUTH_SOCK={target}"));
                }
                out.bind(socket.clone(), target, false, false, false);
            }
        }
    }
    out.key = key.join("\n");
    Ok(out)
}

/// A mount target as an absolute, clean path: `..` cannot climb above
/// the container's root (where the kernel would stop too).
fn clean_target(target: &str) -> String {
    format!("/{}", copier::components(target).join("/"))
}

/// Removes from `upper` the mount points the step had to create (paths the
/// image did not have), and the directories created only to hold them.
/// Every path is taken inside `upper`.
pub(super) fn remove_stubs(store: &Store, state: &State, upper: &Path, targets: &[String]) {
    let (Ok(image), Ok(upper)) = (layers_of(store, state), Root::open(upper)) else {
        return;
    };
    for target in targets {
        let mut rel = clean_target(target).trim_start_matches('/').to_string();
        while !rel.is_empty() && image.meta(&rel).is_none() {
            let Ok(meta) = upper.lstat(&rel) else {
                break;
            };
            let empty = if meta.is_dir() {
                upper.read_dir(&rel).map(|d| d.is_empty()).unwrap_or(false)
            } else {
                meta.len() == 0
            };
            if !empty || upper.remove_all(&rel).is_err() {
                break;
            }
            rel = rel
                .rsplit_once('/')
                .map(|(p, _)| p.to_string())
                .unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::clean_target;

    #[test]
    fn targets_cannot_climb_above_the_root() {
        assert_eq!(clean_target("/../../x"), "/x");
        assert_eq!(clean_target("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_target("/.."), "/");
    }
}
