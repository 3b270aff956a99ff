//! Other platforms' programs, run through the kernel's binfmt_misc and
//! qemu-user: a RUN step of a linux/arm64 stage on an amd64 machine runs
//! its binaries through the handler registered for them. Only handlers
//! with the fix-binary flag (`F`: the kernel opens the emulator when it is
//! registered, so it works inside the step's root, where no qemu is) are
//! taken; Debian's qemu-user-static registers them so. kiln never
//! registers one itself.

use std::path::Path;

/// Where binfmt_misc is mounted.
pub const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// The qemu name of an OCI architecture (`arm64` runs as `aarch64`).
pub fn qemu_name(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "mips64le" => "mips64el",
        "mipsle" => "mipsel",
        "loong64" => "loongarch64",
        other => other,
    }
}

/// The enabled qemu handlers with the fix-binary flag in `dir`
/// (`qemu-aarch64`, ...), sorted.
pub fn handlers(dir: &Path) -> Option<Vec<String>> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("qemu-"))
        .filter(|n| {
            std::fs::read_to_string(dir.join(n)).is_ok_and(|t| {
                t.lines().next() == Some("enabled")
                    && t.lines()
                        .any(|l| l.starts_with("flags:") && l.contains('F'))
            })
        })
        .collect();
    names.sort();
    Some(names)
}

/// Why programs of an architecture cannot run here, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The name is not a plain architecture name.
    #[error(
        "unknown architecture {0:?}: an image or --platform must name one such as amd64 or arm64"
    )]
    Unknown(String),
    /// binfmt_misc is not mounted.
    #[error(
        "programs for linux/{arch} need binfmt_misc, which is not mounted at {dir}: mount -t binfmt_misc binfmt_misc {dir}; apt-get install qemu-user-static (`kiln doctor` says what is registered)"
    )]
    NoBinfmt {
        /// The architecture.
        arch: String,
        /// Where binfmt_misc should be.
        dir: String,
    },
    /// A handler is registered without the fix-binary flag.
    #[error(
        "programs for linux/{arch} need {want} registered with the fix-binary flag (F), so that it runs inside the step's root: apt-get install qemu-user-static registers it so, or update-binfmts --enable {want}"
    )]
    NotFixBinary {
        /// The architecture.
        arch: String,
        /// The handler's name.
        want: String,
    },
    /// No handler is registered.
    #[error(
        "programs for linux/{arch} need a qemu handler for it ({want}), and none is registered: apt-get install qemu-user-static (Debian registers its handlers with the fix-binary flag); kiln never registers one itself"
    )]
    NoHandler {
        /// The architecture.
        arch: String,
        /// The handler's name.
        want: String,
    },
}

/// Ok when programs of `arch` run here: this machine's own (and i386 on
/// amd64), or through a fix-binary qemu handler in `dir`; else what to
/// install or register.
pub fn check(dir: &Path, arch: &str) -> Result<(), EmulatorError> {
    let host = crate::image::config::host_architecture();
    // An image that names no architecture is run as docker runs it.
    if arch.is_empty()
        || arch == host
        || (host == "amd64" && arch == "386")
        || (host == "arm64" && arch == "arm")
    {
        return Ok(());
    }
    // The architecture comes from an image's config: only a plain name
    // is looked up under binfmt_misc.
    if !arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(EmulatorError::Unknown(arch.to_string()));
    }
    let want = format!("qemu-{}", qemu_name(arch));
    match handlers(dir) {
        None => Err(EmulatorError::NoBinfmt {
            arch: arch.to_string(),
            dir: dir.display().to_string(),
        }),
        Some(h) if h.contains(&want) => Ok(()),
        Some(_) if dir.join(&want).exists() => Err(EmulatorError::NotFixBinary {
            arch: arch.to_string(),
            want,
        }),
        Some(_) => Err(EmulatorError::NoHandler {
            arch: arch.to_string(),
            want,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_needs_the_fix_binary_flag() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("qemu-aarch64"),
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("qemu-riscv64"), "enabled\nflags: P\n").unwrap();
        std::fs::write(dir.path().join("qemu-s390x"), "disabled\nflags: PF\n").unwrap();
        assert_eq!(handlers(dir.path()).unwrap(), ["qemu-aarch64"]);
        let host = crate::image::config::host_architecture();
        assert!(check(dir.path(), host).is_ok());
        if host == "amd64" {
            assert!(check(dir.path(), "arm64").is_ok());
            assert!(matches!(
                check(dir.path(), "riscv64"),
                Err(EmulatorError::NotFixBinary { want, .. }) if want == "qemu-riscv64"
            ));
            assert!(
                check(dir.path(), "riscv64")
                    .unwrap_err()
                    .to_string()
                    .contains("fix-binary flag (F)")
            );
            assert!(matches!(
                check(dir.path(), "ppc64le"),
                Err(EmulatorError::NoHandler { .. })
            ));
            // An image's hostile architecture is never a path.
            for hostile in ["../qemu-aarch64", "aarch64/../x", ".."] {
                assert!(
                    matches!(check(dir.path(), hostile), Err(EmulatorError::Unknown(_))),
                    "{hostile}"
                );
            }
            assert!(
                check(&dir.path().join("missing"), "arm64")
                    .unwrap_err()
                    .to_string()
                    .contains("mount -t binfmt_misc")
            );
        }
    }
}
