//! How containers are isolated: in namespaces of their own over an overlay
//! (the default), or, where the kernel or the container kiln runs in
//! refuses namespaces and mounts (a CI job's `docker run`, a Kubernetes
//! pod), by `chroot` into a copy of the step's root, as Buildah's
//! `--isolation chroot` and kaniko did. Chosen once per process:
//! `--isolation` / `KILN_ISOLATION`, else by trying.

use std::sync::OnceLock;

/// The isolation a container gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Namespaces of its own, an overlay root, cgroups.
    Namespaces,
    /// A chroot into a copy of its root: no namespaces, no mounts, the
    /// processes and network of the container kiln itself runs in.
    Chroot,
}

/// What was asked: `auto` tries namespaces first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The strongest isolation this host allows.
    Auto,
    /// Namespaces or an error.
    Namespaces,
    /// Chroot, even where namespaces would work.
    Chroot,
}

impl Choice {
    /// Parses `auto`, `namespaces` (docker's `default` too) or `chroot`.
    pub fn parse(text: &str) -> Result<Choice, String> {
        match text {
            "auto" | "" => Ok(Choice::Auto),
            "namespaces" | "default" | "oci" => Ok(Choice::Namespaces),
            "chroot" => Ok(Choice::Chroot),
            other => Err(format!(
                "isolation {other:?}: must be auto, namespaces or chroot"
            )),
        }
    }
}

/// Why no isolation can be had.
#[derive(Clone, Debug, thiserror::Error)]
pub enum IsolationError {
    /// `KILN_ISOLATION` is not a choice.
    #[error("KILN_ISOLATION: {0}")]
    Env(String),
    /// Chroot isolation as a user.
    #[error(
        "--isolation=chroot needs root (chroot and chown to the image's owners need CAP_SYS_CHROOT and CAP_CHOWN): run kiln as root inside the container, or give it user namespaces"
    )]
    NotRoot,
    /// Chroot isolation without a capability it needs.
    #[error(
        "--isolation=chroot needs {0}, which this process lacks (docker and Kubernetes give it by default; was it dropped?)"
    )]
    MissingCap(&'static str),
    /// Neither namespaces nor chroot.
    #[error(
        "namespaces cannot be made here ({why}), and {chroot}; `kiln doctor` says what this host allows"
    )]
    Neither {
        /// Why namespaces failed (the probe's error).
        why: String,
        /// Why chroot cannot be used.
        chroot: Box<IsolationError>,
    },
}

static ASKED: OnceLock<Choice> = OnceLock::new();
const CAP_SYS_ADMIN: u32 = 21;
static CHOSEN: OnceLock<Result<Isolation, IsolationError>> = OnceLock::new();

/// Records `--isolation` (before the first container; later calls are
/// ignored). Without it, `KILN_ISOLATION` decides, else `auto`.
pub fn ask(choice: Choice) {
    let _ = ASKED.set(choice);
}

/// The isolation every container of this process gets; the first call
/// decides (and, when `auto` falls back, says so once on stderr).
pub fn chosen() -> Result<Isolation, IsolationError> {
    CHOSEN.get_or_init(decide).clone()
}

fn decide() -> Result<Isolation, IsolationError> {
    let asked = match ASKED.get() {
        Some(c) => *c,
        None => Choice::parse(&std::env::var("KILN_ISOLATION").unwrap_or_default())
            .map_err(IsolationError::Env)?,
    };
    match asked {
        Choice::Namespaces => Ok(Isolation::Namespaces),
        Choice::Chroot => chroot_possible().map(|()| Isolation::Chroot),
        // No seccomp filter, and root with CAP_SYS_ADMIN (or a user, whose
        // namespaces the kernel decides): namespaces, without the probe's
        // fork and exec on every start (a refusal then says so, naming
        // `kiln doctor`). Inside a container a filter or the missing
        // capability sends it to the probe.
        Choice::Auto
            if super::probe::seccomp_mode() == 0
                && (!super::fs::is_root()
                    || super::probe::effective_capabilities() & (1 << CAP_SYS_ADMIN) != 0) =>
        {
            Ok(Isolation::Namespaces)
        }
        Choice::Auto => match super::probe::mount_namespace() {
            Ok(()) => Ok(Isolation::Namespaces),
            Err(why) => {
                chroot_possible().map_err(|chroot| IsolationError::Neither {
                    why: why.to_string(),
                    chroot: Box::new(chroot),
                })?;
                eprintln!(
                    "kiln: namespaces cannot be made here ({why}: inside a container without CAP_SYS_ADMIN, or docker's default seccomp profile); isolating with chroot instead (--isolation=chroot: no namespaces or mounts, each container in a copy of its root; `kiln doctor` says more)"
                );
                Ok(Isolation::Chroot)
            }
        },
    }
}

/// Whether `--isolation=chroot` can work here: root, with the
/// capabilities to chroot, give files their image's owners and make device
/// nodes (docker's and Kubernetes' defaults have them).
pub fn chroot_possible() -> Result<(), IsolationError> {
    if !super::fs::is_root() {
        return Err(IsolationError::NotRoot);
    }
    let caps = super::probe::effective_capabilities();
    // CAP_CHOWN 0, CAP_MKNOD 27, CAP_SYS_CHROOT 18.
    for (bit, name) in [(0, "CAP_CHOWN"), (18, "CAP_SYS_CHROOT"), (27, "CAP_MKNOD")] {
        if caps & (1 << bit) == 0 {
            return Err(IsolationError::MissingCap(name));
        }
    }
    Ok(())
}
