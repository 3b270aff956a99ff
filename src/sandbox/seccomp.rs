//! Seccomp for containers: Docker's default profile and
//! `--security-opt seccomp=unconfined|FILE`.
//!
//! `seccomp/default.json` is moby's default profile, verbatim, from
//! <https://github.com/moby/profiles> (`seccomp/default.json` at tag
//! `seccomp/v0.2.3`, the version moby vendors). Copyright The Moby Authors,
//! licensed under the Apache License, Version 2.0
//! (<http://www.apache.org/licenses/LICENSE-2.0>), as kiln is.
//!
//! A profile becomes a filter the way it does under Docker:
//!
//! 1. moby's `setupSeccomp` (`seccomp/seccomp_linux.go`) keeps the rules
//!    whose `includes`/`excludes` match the native architecture, the
//!    container's capabilities and the running kernel, and takes the
//!    architectures from the native entry of `archMap`;
//! 2. runc hands the rules to libseccomp, which resolves every name on every
//!    architecture of the filter (a name unknown there is skipped), and runc
//!    puts a stub in front that answers `ENOSYS` for syscalls newer than any
//!    the profile names, so that libc falls back from them.
//!
//! kiln compiles the rules with seccompiler (pure Rust, no libseccomp) and
//! lays the program out itself, because seccompiler's filters have a single
//! match action and a single architecture while Docker's profile needs
//! per-rule actions (`clone3` answers `ENOSYS`, the rest `EPERM`) and the
//! compat architecture (32-bit x86 programs on x86_64, as Docker allows):
//!
//! ```text
//! load arch; for each architecture: if arch == A goto section A
//! return KILL_PROCESS                  (an architecture the filter does not know)
//! section A: load nr
//!   [x86_64] nr >= 0x40000000 (x32)?   return default action
//!   nr > last syscall named?           return ERRNO(ENOSYS)
//!   for each syscall nr named:         if nr == N: each conditional rule in
//!                                      profile order (seccompiler's argument
//!                                      checks), then the unconditional action
//!                                      or the default action
//!   return default action
//! ```
//!
//! Differences from Docker, all failing closed: x32 syscalls (no number
//! table) get the default action, and a syscall matched by several rules
//! with different actions takes the first matching conditional rule, then
//! the unconditional one (libseccomp leaves the order of overlapping rules
//! undefined).

use caps::Capability;
use nix::libc;
use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule, sock_filter};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;

/// Docker's default profile (moby/profiles `seccomp/default.json`, v0.2.3).
const DEFAULT_PROFILE: &str = include_str!("seccomp/default.json");

// seccompiler's instruction type is the kernel's (see `apply`).
const _: () = assert!(
    std::mem::size_of::<sock_filter>() == std::mem::size_of::<libc::sock_filter>()
        && std::mem::align_of::<sock_filter>() == std::mem::align_of::<libc::sock_filter>()
);

/// The kernel refuses longer programs (`BPF_MAXINSNS`).
const MAX_INSTRUCTIONS: usize = 4096;

/// Everything that can go wrong from a profile to an installed filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// `--security-opt seccomp=` with nothing after it.
    #[error("seccomp: empty profile name (use unconfined, builtin or a file)")]
    EmptyOption,
    /// The profile file could not be read.
    #[error("reading seccomp profile {path}: {source}")]
    Read {
        /// The file named with `seccomp=FILE`.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// The profile is not JSON of Docker's seccomp format.
    #[error("decoding seccomp profile failed: {0}")]
    Json(#[from] serde_json::Error),
    /// The profile is well-formed JSON but means nothing Docker would accept.
    #[error("seccomp profile: {0}")]
    Invalid(String),
    /// An action libseccomp does not know (`SCMP_ACT_...`).
    #[error("seccomp profile: unknown action {0:?}")]
    UnknownAction(String),
    /// An action kiln cannot carry out (`SCMP_ACT_NOTIFY` needs a listener).
    #[error("seccomp profile: action {0} is not supported by kiln")]
    UnsupportedAction(String),
    /// A comparison libseccomp does not know (`SCMP_CMP_...`).
    #[error("seccomp profile: unknown comparison {0:?}")]
    UnknownOperator(String),
    /// An argument index past the sixth argument.
    #[error("seccomp profile: argument index {0} out of range (0 to 5)")]
    ArgumentIndex(u32),
    /// An architecture name that is not one of libseccomp's `SCMP_ARCH_...`.
    #[error("seccomp profile: unknown architecture {0:?}")]
    UnknownArchitecture(String),
    /// A filter flag the kernel does not offer (`SECCOMP_FILTER_FLAG_...`).
    #[error("seccomp profile: unknown flag {0:?}")]
    UnknownFlag(String),
    /// A `minKernel` that is not `<kernel>.<major>`.
    #[error("invalid kernel version: {0:?}, expected \"<kernel>.<major>\"")]
    KernelVersion(String),
    /// This machine's architecture has no seccomp support in kiln.
    #[error("seccomp is not supported on {0}")]
    UnsupportedHost(&'static str),
    /// seccompiler refused a rule.
    #[error("compiling seccomp rules: {0}")]
    Compile(#[from] seccompiler::BackendError),
    /// The program is longer than the kernel accepts.
    #[error("seccomp program too large: {0} instructions (at most {MAX_INSTRUCTIONS})")]
    TooLarge(usize),
    /// The kernel refused the filter for want of privilege: the caller has
    /// neither `CAP_SYS_ADMIN` nor no_new_privs set.
    #[error("installing the seccomp filter needs CAP_SYS_ADMIN or no_new_privs: {0}")]
    NotPermitted(io::Error),
    /// The kernel refused the filter.
    #[error("installing the seccomp filter: {0}")]
    Install(io::Error),
}

/// A seccomp profile in Docker's JSON format (moby's `seccomp.Seccomp`: the
/// OCI `LinuxSeccomp` with `archMap` and conditional rules).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seccomp {
    /// The action for syscalls no rule names (`SCMP_ACT_...`).
    #[serde(default, deserialize_with = "nullable")]
    pub default_action: String,
    /// The errno of an `SCMP_ACT_ERRNO` default action (EPERM when absent).
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// OCI style: the architectures of the filter (`SCMP_ARCH_...`).
    #[serde(default, deserialize_with = "nullable")]
    pub architectures: Vec<String>,
    /// Docker style: architectures and their sub-architectures; the entry
    /// of the native architecture is used.
    #[serde(default, deserialize_with = "nullable")]
    pub arch_map: Vec<Architecture>,
    /// `SECCOMP_FILTER_FLAG_...` flags for seccomp(2).
    #[serde(default, deserialize_with = "nullable")]
    pub flags: Vec<String>,
    /// The rules.
    #[serde(default, deserialize_with = "nullable")]
    pub syscalls: Vec<Syscall>,
}

/// An `archMap` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Architecture {
    /// The main architecture (`SCMP_ARCH_X86_64`).
    #[serde(rename = "architecture")]
    pub arch: String,
    /// Architectures whose programs run on it (`SCMP_ARCH_X86`).
    #[serde(rename = "subArchitectures", default, deserialize_with = "nullable")]
    pub sub_arches: Vec<String>,
}

/// One rule: syscalls, an action, argument conditions, and when it applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Syscall {
    /// The syscalls named.
    #[serde(default, deserialize_with = "nullable")]
    pub names: Vec<String>,
    /// Old profiles: a single name instead of `names`.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// What happens when the rule matches (`SCMP_ACT_...`).
    pub action: String,
    /// The errno of `SCMP_ACT_ERRNO` (or the message of `SCMP_ACT_TRACE`).
    #[serde(default)]
    pub errno_ret: Option<u32>,
    /// Conditions on the arguments, all of which must hold.
    #[serde(default, deserialize_with = "nullable")]
    pub args: Vec<Arg>,
    /// Free text.
    #[serde(default, deserialize_with = "nullable")]
    pub comment: String,
    /// The rule applies only if all of these hold.
    #[serde(default)]
    pub includes: Option<Filter>,
    /// The rule does not apply if any of these holds.
    #[serde(default)]
    pub excludes: Option<Filter>,
}

/// A condition on one syscall argument.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// Which argument, 0 to 5.
    pub index: u32,
    /// The value compared with (the mask for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// For `SCMP_CMP_MASKED_EQ`: what the masked argument must equal.
    #[serde(default)]
    pub value_two: u64,
    /// The comparison (`SCMP_CMP_...`).
    pub op: String,
}

/// The conditions of `includes` and `excludes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Capabilities (`CAP_SYS_ADMIN`).
    #[serde(default, deserialize_with = "nullable")]
    pub caps: Vec<String>,
    /// Architectures in libseccomp's native names (`amd64`, `arm64`, `x86`).
    #[serde(default, deserialize_with = "nullable")]
    pub arches: Vec<String>,
    /// The kernel version, `<kernel>.<major>`.
    #[serde(default)]
    pub min_kernel: Option<KernelVersion>,
}

/// A kernel version as profiles give it: kernel and major revision only
/// (`5.8` for 5.8.13-arch1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct KernelVersion {
    /// 5 in 5.8.
    pub kernel: u64,
    /// 8 in 5.8.
    pub major: u64,
}

impl TryFrom<String> for KernelVersion {
    type Error = SeccompError;

    /// As moby's `UnmarshalJSON`: exactly two parts, each below 256, not
    /// 0.0; the empty string is 0.0 (which every kernel satisfies).
    fn try_from(text: String) -> Result<Self, SeccompError> {
        if text.is_empty() {
            return Ok(KernelVersion {
                kernel: 0,
                major: 0,
            });
        }
        let bad = || SeccompError::KernelVersion(text.clone());
        let (kernel, major) = text.split_once('.').ok_or_else(bad)?;
        let part = |p: &str| p.parse::<u8>().map(u64::from).map_err(|_| bad());
        let version = KernelVersion {
            kernel: part(kernel)?,
            major: part(major)?,
        };
        if version.kernel == 0 && version.major == 0 {
            return Err(bad());
        }
        Ok(version)
    }
}

/// JSON `null` reads as the empty value, as Go's encoding/json does.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The architectures kiln can filter: the native ones and their compat
/// modes, with their syscall tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    X86_64,
    X86,
    Aarch64,
    Arm,
}

impl Arch {
    /// The architecture kiln runs on.
    fn native() -> Result<Arch, SeccompError> {
        if cfg!(target_arch = "x86_64") {
            Ok(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Ok(Arch::Aarch64)
        } else {
            Err(SeccompError::UnsupportedHost(std::env::consts::ARCH))
        }
    }

    /// From libseccomp's name; `None` for an architecture kiln has no table
    /// for (its syscalls, if this machine runs any, meet the bad-arch action).
    fn from_scmp(name: &str) -> Result<Option<Arch>, SeccompError> {
        match name {
            "SCMP_ARCH_X86_64" => Ok(Some(Arch::X86_64)),
            "SCMP_ARCH_X86" => Ok(Some(Arch::X86)),
            "SCMP_ARCH_AARCH64" => Ok(Some(Arch::Aarch64)),
            "SCMP_ARCH_ARM" => Ok(Some(Arch::Arm)),
            other if other.starts_with("SCMP_ARCH_") => Ok(None),
            other => Err(SeccompError::UnknownArchitecture(other.to_string())),
        }
    }

    /// The name `includes.arches` uses for the native architecture (moby's
    /// `goToNative[runtime.GOARCH]`).
    fn native_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::X86 => "x86",
            Arch::Aarch64 => "arm64",
            Arch::Arm => "arm",
        }
    }

    /// Whether programs of `self` can run on a `native` kernel: only those
    /// get a section (the others could never match `seccomp_data.arch`).
    fn runs_on(self, native: Arch) -> bool {
        matches!(
            (native, self),
            (Arch::X86_64, Arch::X86_64 | Arch::X86) | (Arch::Aarch64, Arch::Aarch64 | Arch::Arm)
        )
    }

    /// `AUDIT_ARCH_*`, what the kernel puts in `seccomp_data.arch`.
    fn audit(self) -> u32 {
        const BIT64: u32 = 0x8000_0000;
        const LE: u32 = 0x4000_0000;
        match self {
            Arch::X86_64 => 62 | BIT64 | LE,   // EM_X86_64
            Arch::X86 => 3 | LE,               // EM_386
            Arch::Aarch64 => 183 | BIT64 | LE, // EM_AARCH64
            Arch::Arm => 40 | LE,              // EM_ARM
        }
    }

    /// 32-bit architectures compare only the low half of an argument, as
    /// libseccomp does for them.
    fn arg_len(self) -> SeccompCmpArgLen {
        match self {
            Arch::X86_64 | Arch::Aarch64 => SeccompCmpArgLen::Qword,
            Arch::X86 | Arch::Arm => SeccompCmpArgLen::Dword,
        }
    }

    /// The syscall's number here, `None` if it does not exist here.
    fn number(self, name: &str) -> Option<u32> {
        let id = match self {
            Arch::X86_64 => syscalls::x86_64::Sysno::from_str(name).ok()?.id(),
            Arch::X86 => syscalls::x86::Sysno::from_str(name).ok()?.id(),
            Arch::Aarch64 => syscalls::aarch64::Sysno::from_str(name).ok()?.id(),
            Arch::Arm => match name {
                // ARM's private syscalls (__ARM_NR_*), missing from the
                // syscalls crate's table; libseccomp knows them.
                "breakpoint" => 0x0f_0001,
                "cacheflush" => 0x0f_0002,
                "usr26" => 0x0f_0003,
                "usr32" => 0x0f_0004,
                "set_tls" => 0x0f_0005,
                _ => syscalls::arm::Sysno::from_str(name).ok()?.id(),
            },
        };
        u32::try_from(id).ok()
    }
}

/// A compiled filter, ready for [`apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    instructions: Vec<sock_filter>,
    /// `SECCOMP_FILTER_FLAG_*` for seccomp(2).
    flags: u32,
}

impl Program {
    /// The program as plain words (one instruction each) and its flags, to
    /// hand to another process: the init applies what the host compiled.
    pub fn to_words(&self) -> (u32, Vec<u64>) {
        let words = self
            .instructions
            .iter()
            .map(|i| {
                u64::from(i.code) << 48
                    | u64::from(i.jt) << 40
                    | u64::from(i.jf) << 32
                    | u64::from(i.k)
            })
            .collect();
        (self.flags, words)
    }

    /// The program [`Program::to_words`] gave.
    pub fn from_words(flags: u32, words: &[u64]) -> Program {
        let instructions = words
            .iter()
            .map(|w| sock_filter {
                code: (w >> 48) as u16,
                jt: (w >> 40) as u8,
                jf: (w >> 32) as u8,
                k: *w as u32,
            })
            .collect();
        Program {
            instructions,
            flags,
        }
    }

    /// The number of BPF instructions.
    pub fn len(&self) -> usize {
        self.instructions.len()
    }

    /// Whether the program has no instruction (never true for a compiled
    /// profile).
    pub fn is_empty(&self) -> bool {
        self.instructions.is_empty()
    }
}

/// What `--security-opt seccomp=...` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Profile {
    /// Docker's default profile (no option, or `seccomp=builtin`).
    #[default]
    Default,
    /// No filter (`seccomp=unconfined`).
    Unconfined,
    /// A profile in Docker's JSON format (`seccomp=FILE`).
    File(PathBuf),
}

impl Profile {
    /// The value of `--security-opt seccomp=VALUE`, read as docker's CLI
    /// reads it: `unconfined`, `builtin`, or else a file name.
    pub fn from_option(value: &str) -> Result<Profile, SeccompError> {
        match value {
            "" => Err(SeccompError::EmptyOption),
            "unconfined" => Ok(Profile::Unconfined),
            "builtin" => Ok(Profile::Default),
            file => Ok(Profile::File(PathBuf::from(file))),
        }
    }

    /// The profile, parsed; `None` for [`Profile::Unconfined`]. A file is
    /// read here, so call this where the path means what the user meant
    /// (the host side, before entering the container's root), as docker's
    /// CLI reads the file before sending it to the daemon.
    pub fn load(&self) -> Result<Option<Seccomp>, SeccompError> {
        match self {
            Profile::Default => Seccomp::default_profile().map(Some),
            Profile::Unconfined => Ok(None),
            Profile::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SeccompError::Read {
                    path: path.clone(),
                    source,
                })?;
                from_json(&text).map(Some)
            }
        }
    }

    /// [`Profile::load`], then [`Seccomp::compile`]: the filter for a
    /// process with capabilities `caps`, `None` when there is to be none.
    pub fn compile(&self, caps: &[Capability]) -> Result<Option<Program>, SeccompError> {
        match self.load()? {
            Some(profile) => profile.compile(caps),
            None => Ok(None),
        }
    }
}

/// Parses a profile in Docker's JSON format (what `seccomp=FILE` holds).
/// It compiles the way the default profile does: [`Seccomp::compile`].
pub fn from_json(text: &str) -> Result<Seccomp, SeccompError> {
    Ok(serde_json::from_str(text)?)
}

/// Docker's default profile, evaluated for a process whose capabilities
/// are `caps` (Docker checks the bounding set; kiln's containers have the
/// same effective and bounding sets), on this machine and kernel, and
/// compiled.
pub fn filter(caps: &[Capability]) -> Result<Program, SeccompError> {
    Seccomp::default_profile()?
        .compile(caps)?
        .ok_or_else(|| SeccompError::Invalid("the default profile is empty".into()))
}

/// Installs `program` on the calling thread with seccomp(2); children and
/// `execve` keep it. It does not set no_new_privs (Docker does not: setuid
/// programs keep working), so the caller must have `CAP_SYS_ADMIN` in its
/// user namespace, or have set no_new_privs (see [`set_no_new_privs`]);
/// otherwise [`SeccompError::NotPermitted`]. The filter applies at once:
/// every syscall the caller makes afterwards (setuid, capset, execve...) must
/// be one the profile allows (Docker's does). Other threads are not
/// filtered unless the profile asks for `SECCOMP_FILTER_FLAG_TSYNC`.
pub fn apply(program: &Program) -> Result<(), SeccompError> {
    if program.is_empty() {
        return Err(SeccompError::Invalid("empty program".into()));
    }
    let len = u16::try_from(program.len()).map_err(|_| SeccompError::TooLarge(program.len()))?;
    // No allocation here: the caller may be a child forked from a
    // multi-threaded process. seccompiler's `sock_filter` is `repr(C)` with
    // the fields of <linux/filter.h>'s (seccompiler hands it to the kernel
    // the same way), so the program is passed as it is.
    let fprog = libc::sock_fprog {
        len,
        filter: program
            .instructions
            .as_ptr()
            .cast::<libc::sock_filter>()
            .cast_mut(),
    };
    // SAFETY: seccomp(2) reads `fprog` and the instructions it points to
    // during the call only (the kernel copies them, never writes them);
    // both outlive it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(program.flags),
            &fprog as *const libc::sock_fprog,
        )
    };
    match rc {
        0 => Ok(()),
        // With TSYNC, a positive value is the thread that could not sync.
        tid if tid > 0 => Err(SeccompError::Install(io::Error::other(format!(
            "thread {tid} could not be synchronised"
        )))),
        _ => {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EACCES) {
                Err(SeccompError::NotPermitted(e))
            } else {
                Err(SeccompError::Install(e))
            }
        }
    }
}

/// Sets no_new_privs on the calling thread (`--security-opt
/// no-new-privileges`): an unprivileged process may then install a filter,
/// and execve grants no privilege (setuid bits and file capabilities are
/// ignored) from then on.
pub fn set_no_new_privs() -> Result<(), SeccompError> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| SeccompError::Install(e.into()))
}

/// One rule after moby's evaluation: names, the return value of its action,
/// its conditions.
struct Rule<'a> {
    names: Vec<&'a str>,
    action: u32,
    args: &'a [Arg],
}

impl Seccomp {
    /// Docker's default profile (embedded, moby/profiles v0.2.3).
    pub fn default_profile() -> Result<Seccomp, SeccompError> {
        from_json(DEFAULT_PROFILE)
    }

    /// Evaluates the profile as moby's `setupSeccomp` does for this
    /// machine's architecture, the running kernel and a process with
    /// capabilities `caps`, and compiles it. `None` when the profile has
    /// neither a default action nor rules (Docker then runs unconfined).
    pub fn compile(&self, caps: &[Capability]) -> Result<Option<Program>, SeccompError> {
        self.compile_for(caps, Arch::native()?, running_kernel)
    }

    fn compile_for(
        &self,
        caps: &[Capability],
        native: Arch,
        kernel: fn() -> Result<KernelVersion, SeccompError>,
    ) -> Result<Option<Program>, SeccompError> {
        if self.default_action.is_empty() && self.syscalls.is_empty() {
            return Ok(None);
        }
        if self.default_action.is_empty() {
            return Err(SeccompError::Invalid("no defaultAction".into()));
        }
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return Err(SeccompError::Invalid(
                "both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'".into(),
            ));
        }
        let default = action(&self.default_action, self.default_errno_ret)?;
        let flags = self.flags.iter().try_fold(0u32, |acc, f| {
            let bit = match f.as_str() {
                "SECCOMP_FILTER_FLAG_TSYNC" => libc::SECCOMP_FILTER_FLAG_TSYNC,
                "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                other => return Err(SeccompError::UnknownFlag(other.to_string())),
            };
            Ok(acc | bit as u32)
        })?;

        // The architectures: the native one always (libseccomp's filters
        // always hold it), then the archMap entry of the native one, or the
        // OCI list; unknown-to-kiln and foreign ones are left out.
        let mut arches = vec![native];
        let listed: Vec<&String> = match self
            .arch_map
            .iter()
            .find(|a| matches!(Arch::from_scmp(&a.arch), Ok(Some(arch)) if arch == native))
        {
            Some(entry) => std::iter::once(&entry.arch)
                .chain(&entry.sub_arches)
                .collect(),
            None => self.architectures.iter().collect(),
        };
        for name in listed {
            if let Some(arch) = Arch::from_scmp(name)?
                && arch.runs_on(native)
                && !arches.contains(&arch)
            {
                arches.push(arch);
            }
        }

        let cap_names: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
        let has_cap = |c: &String| cap_names.contains(c);
        let arch_name = native.native_name();
        let mut rules = Vec::new();
        for call in &self.syscalls {
            let names: Vec<&str> = match (call.name.is_empty(), call.names.is_empty()) {
                (false, false) => {
                    return Err(SeccompError::Invalid(
                        "both 'name' and 'names' are specified in the seccomp profile, use either 'name' or 'names'".into(),
                    ));
                }
                (false, true) => vec![call.name.as_str()],
                _ => call.names.iter().map(String::as_str).collect(),
            };
            if let Some(ex) = &call.excludes {
                if ex.arches.iter().any(|a| a == arch_name) || ex.caps.iter().any(has_cap) {
                    continue;
                }
                if let Some(min) = ex.min_kernel
                    && kernel()? >= min
                {
                    continue;
                }
            }
            if let Some(inc) = &call.includes {
                if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == arch_name) {
                    continue;
                }
                if !inc.caps.iter().all(has_cap) {
                    continue;
                }
                if let Some(min) = inc.min_kernel
                    && kernel()? < min
                {
                    continue;
                }
            }
            rules.push(Rule {
                names,
                action: action(&call.action, call.errno_ret)?,
                args: &call.args,
            });
        }

        // runc's ENOSYS stub, under runc's conditions: not for a default
        // that allows, nor when the default already answers ENOSYS.
        let enosys = !matches!(default, libc::SECCOMP_RET_ALLOW | libc::SECCOMP_RET_LOG)
            && default & libc::SECCOMP_RET_ACTION_FULL != libc::SECCOMP_RET_TRACE
            && default != libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

        let mut sections = Vec::new();
        for &arch in &arches {
            sections.push(section(arch, &rules, default, enosys)?);
        }
        let mut program = vec![load(OFFSET_ARCH)];
        let mut dispatch = Vec::new();
        for &arch in &arches {
            program.push(jump(BPF_JEQ, arch.audit(), 0, 1));
            dispatch.push(program.len());
            program.push(stmt(BPF_JMP | BPF_JA, 0));
        }
        // A syscall of an architecture the filter does not know: it could
        // bypass every rule, so the process dies (libseccomp's bad-arch
        // action kills too).
        program.push(ret(libc::SECCOMP_RET_KILL_PROCESS));
        for (ja, body) in dispatch.into_iter().zip(sections) {
            program[ja].k = u32::try_from(program.len() - ja - 1)
                .map_err(|_| SeccompError::TooLarge(program.len()))?;
            program.extend(body);
        }
        if program.len() > MAX_INSTRUCTIONS {
            return Err(SeccompError::TooLarge(program.len()));
        }
        Ok(Some(Program {
            instructions: program,
            flags,
        }))
    }
}

/// The running kernel's version, from uname(2).
fn running_kernel() -> Result<KernelVersion, SeccompError> {
    // SAFETY: utsname is plain bytes; all zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct it is given and nothing else.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(SeccompError::KernelVersion(
            io::Error::last_os_error().to_string(),
        ));
    }
    let release: Vec<u8> = uts
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    parse_release(&String::from_utf8_lossy(&release))
}

/// Kernel and major revision of a release string, as moby's `parseRelease`
/// (`fmt.Sscanf("%d.%d")`): "6.1.0-18-amd64" is 6.1, "3.12-1-amd64" 3.12.
fn parse_release(release: &str) -> Result<KernelVersion, SeccompError> {
    let bad = || SeccompError::KernelVersion(release.to_string());
    let number = |s: &str| -> Result<(u64, usize), SeccompError> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        Ok((s[..digits].parse().map_err(|_| bad())?, digits))
    };
    let (kernel, n) = number(release)?;
    let rest = release[n..].strip_prefix('.').ok_or_else(bad)?;
    let (major, _) = number(rest)?;
    Ok(KernelVersion { kernel, major })
}

/// The return value of an action, as runc maps profile actions onto
/// libseccomp's (an ERRNO or TRACE without errnoRet means EPERM).
fn action(name: &str, errno: Option<u32>) -> Result<u32, SeccompError> {
    let data = errno.unwrap_or(libc::EPERM as u32) & libc::SECCOMP_RET_DATA;
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => libc::SECCOMP_RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => libc::SECCOMP_RET_KILL_PROCESS,
        "SCMP_ACT_TRAP" => libc::SECCOMP_RET_TRAP,
        "SCMP_ACT_ERRNO" => libc::SECCOMP_RET_ERRNO | data,
        "SCMP_ACT_TRACE" => libc::SECCOMP_RET_TRACE | data,
        "SCMP_ACT_ALLOW" => libc::SECCOMP_RET_ALLOW,
        "SCMP_ACT_LOG" => libc::SECCOMP_RET_LOG,
        "SCMP_ACT_NOTIFY" => return Err(SeccompError::UnsupportedAction(name.to_string())),
        other => return Err(SeccompError::UnknownAction(other.to_string())),
    })
}

/// A rule's argument conditions as seccompiler rules (any of which
/// matching means the rule matches).
fn conditions(args: &[Arg], len: &SeccompCmpArgLen) -> Result<Vec<SeccompRule>, SeccompError> {
    let mut conds = Vec::new();
    for arg in args {
        let index = u8::try_from(arg.index)
            .ok()
            .filter(|i| *i < 6)
            .ok_or(SeccompError::ArgumentIndex(arg.index))?;
        let (op, value) = match arg.op.as_str() {
            "SCMP_CMP_NE" => (SeccompCmpOp::Ne, arg.value),
            "SCMP_CMP_LT" => (SeccompCmpOp::Lt, arg.value),
            "SCMP_CMP_LE" => (SeccompCmpOp::Le, arg.value),
            "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, arg.value),
            "SCMP_CMP_GE" => (SeccompCmpOp::Ge, arg.value),
            "SCMP_CMP_GT" => (SeccompCmpOp::Gt, arg.value),
            // (arg & value) == valueTwo
            "SCMP_CMP_MASKED_EQ" => (SeccompCmpOp::MaskedEq(arg.value), arg.value_two),
            other => return Err(SeccompError::UnknownOperator(other.to_string())),
        };
        conds.push(SeccompCondition::new(index, len.clone(), op, value)?);
    }
    // Two conditions on one argument: libseccomp cannot AND them, so runc
    // adds each as a rule of its own (an OR); kiln does the same, so that a
    // profile means here what it means under Docker.
    let mut seen = [false; 6];
    let repeated = args.iter().any(|a| {
        let i = a.index as usize;
        std::mem::replace(&mut seen[i], true)
    });
    Ok(if repeated {
        conds
            .into_iter()
            .map(|c| SeccompRule::new(vec![c]))
            .collect::<Result<_, _>>()?
    } else {
        vec![SeccompRule::new(conds)?]
    })
}

/// What one syscall number does in one architecture's section.
#[derive(Default)]
struct Chain {
    /// Conditional rules in profile order, with their actions.
    conditional: Vec<(SeccompRule, u32)>,
    /// The action of the first rule without conditions.
    unconditional: Option<u32>,
}

/// The section of one architecture (see the module's documentation).
fn section(
    arch: Arch,
    rules: &[Rule],
    default: u32,
    enosys: bool,
) -> Result<Vec<sock_filter>, SeccompError> {
    let len = arch.arg_len();
    let mut table: BTreeMap<u32, Chain> = BTreeMap::new();
    let mut last = None;
    for rule in rules {
        let numbers: Vec<u32> = rule.names.iter().filter_map(|n| arch.number(n)).collect();
        last = numbers.iter().copied().chain(last).max();
        // runc leaves out rules whose action is the default one.
        if rule.action == default || numbers.is_empty() {
            continue;
        }
        let compiled = if rule.args.is_empty() {
            Vec::new()
        } else {
            conditions(rule.args, &len)?
        };
        for nr in numbers {
            let chain = table.entry(nr).or_default();
            if compiled.is_empty() {
                chain.unconditional.get_or_insert(rule.action);
            } else {
                chain
                    .conditional
                    .extend(compiled.iter().map(|r| (r.clone(), rule.action)));
            }
        }
    }

    let mut out = vec![load(OFFSET_NR)];
    if arch == Arch::X86_64 {
        // x32 ABI calls (nr | __X32_SYSCALL_BIT): kiln has no table for
        // them, so they get the default action, not the ENOSYS below.
        out.push(jump(BPF_JGE, 0x4000_0000, 0, 1));
        out.push(ret(default));
    }
    if enosys && let Some(last) = last {
        out.push(jump(BPF_JGT, last, 0, 1));
        out.push(ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    }
    for (nr, chain) in table {
        let mut body = Vec::new();
        for (rule, action) in chain.conditional {
            // seccompiler's rule block: entered at its first instruction,
            // it falls through past its end when every condition holds and
            // jumps one further when one does not; the instruction past its
            // end is therefore the rule's action.
            body.extend(seccompiler::BpfProgram::from(rule));
            body.push(ret(action));
        }
        body.push(ret(chain.unconditional.unwrap_or(default)));
        if body.len() == 1 {
            // nr == N: return the action; else past it.
            out.push(jump(BPF_JEQ, nr, 0, 1));
        } else {
            // nr == N: into the body; else jump over it (a conditional
            // jump reaches 255 instructions only).
            let skip = u32::try_from(body.len()).map_err(|_| SeccompError::TooLarge(body.len()))?;
            out.push(jump(BPF_JEQ, nr, 1, 0));
            out.push(stmt(BPF_JMP | BPF_JA, skip));
        }
        out.extend(body);
    }
    out.push(ret(default));
    Ok(out)
}

// Classic BPF, as <linux/filter.h> and <linux/bpf_common.h> define it.
/// BPF_LD | BPF_W | BPF_ABS: load a word of `seccomp_data`.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP: u16 = 0x05;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_JGE: u16 = 0x30;
const BPF_RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, nr)` and `arch`.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn load(offset: u32) -> sock_filter {
    stmt(BPF_LD_W_ABS, offset)
}

fn ret(value: u32) -> sock_filter {
    stmt(BPF_RET_K, value)
}

fn jump(op: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: BPF_JMP | op,
        jt,
        jf,
        k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caps::Capability as C;
    use syscalls::Sysno;

    /// Docker's default capabilities (init.rs's `DEFAULT_CAPS`).
    const DOCKER_CAPS: [Capability; 14] = [
        C::CAP_CHOWN,
        C::CAP_DAC_OVERRIDE,
        C::CAP_FSETID,
        C::CAP_FOWNER,
        C::CAP_MKNOD,
        C::CAP_NET_RAW,
        C::CAP_SETGID,
        C::CAP_SETUID,
        C::CAP_SETFCAP,
        C::CAP_SETPCAP,
        C::CAP_NET_BIND_SERVICE,
        C::CAP_SYS_CHROOT,
        C::CAP_KILL,
        C::CAP_AUDIT_WRITE,
    ];

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    fn with_admin() -> Vec<Capability> {
        let mut caps = DOCKER_CAPS.to_vec();
        caps.push(C::CAP_SYS_ADMIN);
        caps
    }

    /// Runs `program` on a `seccomp_data` as the kernel would (the classic
    /// BPF subset seccomp filters use) and returns its verdict.
    fn run(program: &Program, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::with_capacity(64);
        data.extend(nr.to_le_bytes());
        data.extend(arch.to_le_bytes());
        data.extend(0u64.to_le_bytes());
        args.iter().for_each(|a| data.extend(a.to_le_bytes()));
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = &program.instructions[pc];
            pc += 1;
            let cond = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
            match i.code {
                0x20 => {
                    let k = i.k as usize;
                    a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                0x54 => a &= i.k,
                0x05 => pc += i.k as usize,
                0x15 => pc += cond(a == i.k),
                0x25 => pc += cond(a > i.k),
                0x35 => pc += cond(a >= i.k),
                0x45 => pc += cond(a & i.k != 0),
                0x06 => return i.k,
                code => panic!("unexpected BPF instruction {code:#x} at {}", pc - 1),
            }
        }
    }

    fn native() -> Arch {
        Arch::native().unwrap()
    }

    fn call(program: &Program, nr: Sysno, args: [u64; 6]) -> u32 {
        run(program, native().audit(), nr.id() as u32, args)
    }

    /// What the host compiles, the init installs unchanged.
    #[test]
    fn a_program_survives_words() {
        let program = filter(&[caps::Capability::CAP_CHOWN]).unwrap();
        let (flags, words) = program.to_words();
        assert_eq!(words.len(), program.len());
        assert_eq!(Program::from_words(flags, &words), program);
    }

    #[test]
    fn default_profile_parses() {
        let p = Seccomp::default_profile().unwrap();
        assert_eq!(p.default_action, "SCMP_ACT_ERRNO");
        assert_eq!(p.default_errno_ret, Some(1));
        assert!(p.arch_map.iter().any(|a| a.arch == "SCMP_ARCH_X86_64"));
        assert!(p.syscalls.len() > 30);
        assert!(p.syscalls[0].names.iter().any(|n| n == "getpid"));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn compiles_on_x86_64() {
        let program = filter(&DOCKER_CAPS).unwrap();
        assert!(!program.is_empty());
        assert!(program.len() <= MAX_INSTRUCTIONS);
        // Both x86_64 and i386 get a section.
        let arches: Vec<u32> = program.instructions[1..5]
            .iter()
            .filter(|i| i.code == BPF_JMP | BPF_JEQ)
            .map(|i| i.k)
            .collect();
        assert_eq!(arches, [Arch::X86_64.audit(), Arch::X86.audit()]);
    }

    #[test]
    fn plain_syscalls() {
        let p = filter(&DOCKER_CAPS).unwrap();
        assert_eq!(call(&p, Sysno::getpid, [0; 6]), ALLOW);
        assert_eq!(call(&p, Sysno::execve, [0; 6]), ALLOW);
        assert_eq!(call(&p, Sysno::setuid, [0; 6]), ALLOW);
        assert_eq!(call(&p, Sysno::close_range, [0; 6]), ALLOW);
        // Not in the profile: the default action.
        assert_eq!(call(&p, Sysno::kexec_load, [0; 6]), EPERM);
        assert_eq!(call(&p, Sysno::add_key, [0; 6]), EPERM);
        // Newer than anything the profile names: ENOSYS (runc's stub).
        assert_eq!(run(&p, native().audit(), 1000, [0; 6]), ENOSYS);
        // An architecture the filter does not know dies.
        assert_eq!(
            run(&p, 0xdead_beef, Sysno::getpid.id() as u32, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn clone_flags() {
        let newuser = libc::CLONE_NEWUSER as u64;
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD) as u64;
        // clone's flags are argument 0 (1 on s390 only).
        let p = filter(&DOCKER_CAPS).unwrap();
        assert_eq!(call(&p, Sysno::clone, [thread, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            call(&p, Sysno::clone, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(call(&p, Sysno::clone, [newuser, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(
            call(&p, Sysno::clone, [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]),
            EPERM
        );
        // clone3's flags are behind a pointer: ENOSYS makes libc use clone.
        assert_eq!(call(&p, Sysno::clone3, [0; 6]), ENOSYS);
        let admin = filter(&with_admin()).unwrap();
        assert_eq!(call(&admin, Sysno::clone, [newuser, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(call(&admin, Sysno::clone3, [0; 6]), ALLOW);
    }

    #[test]
    fn personality_arguments() {
        let p = filter(&DOCKER_CAPS).unwrap();
        for allowed in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
            assert_eq!(
                call(&p, Sysno::personality, [allowed, 0, 0, 0, 0, 0]),
                ALLOW,
                "{allowed:#x}"
            );
        }
        // ADDR_NO_RANDOMIZE, and a value with high bits set.
        for denied in [0x0040000, 0x1_0000_0000, 0xffff_ffff_ffff_ffff] {
            assert_eq!(
                call(&p, Sysno::personality, [denied, 0, 0, 0, 0, 0]),
                EPERM,
                "{denied:#x}"
            );
        }
    }

    #[test]
    fn socket_families() {
        let p = filter(&DOCKER_CAPS).unwrap();
        for allowed in [
            libc::AF_UNIX,
            libc::AF_INET,
            libc::AF_INET6,
            libc::AF_NETLINK,
        ] {
            assert_eq!(
                call(&p, Sysno::socket, [allowed as u64, 0, 0, 0, 0, 0]),
                ALLOW
            );
        }
        // AF_VSOCK (40) is the one family denied.
        assert_eq!(
            call(&p, Sysno::socket, [libc::AF_VSOCK as u64, 0, 0, 0, 0, 0]),
            EPERM
        );
    }

    #[test]
    fn capabilities_include_rules() {
        let p = filter(&DOCKER_CAPS).unwrap();
        let admin = filter(&with_admin()).unwrap();
        for nr in [Sysno::mount, Sysno::umount2, Sysno::unshare, Sysno::setns] {
            assert_eq!(call(&p, nr, [0; 6]), EPERM, "{nr}");
            assert_eq!(call(&admin, nr, [0; 6]), ALLOW, "{nr}");
        }
        // CAP_SYS_CHROOT is in Docker's set; CAP_SYS_PTRACE, CAP_SYS_TIME not.
        assert_eq!(call(&p, Sysno::chroot, [0; 6]), ALLOW);
        assert_eq!(call(&p, Sysno::kcmp, [0; 6]), EPERM);
        assert_eq!(call(&p, Sysno::settimeofday, [0; 6]), EPERM);
        let mut ptrace = DOCKER_CAPS.to_vec();
        ptrace.push(C::CAP_SYS_PTRACE);
        assert_eq!(call(&filter(&ptrace).unwrap(), Sysno::kcmp, [0; 6]), ALLOW);
        // ptrace is allowed from kernel 4.8 on (minKernel).
        assert_eq!(call(&p, Sysno::ptrace, [0; 6]), ALLOW);
        let profile = Seccomp::default_profile().unwrap();
        let old = profile
            .compile_for(&DOCKER_CAPS, native(), || {
                Ok(KernelVersion {
                    kernel: 4,
                    major: 4,
                })
            })
            .unwrap()
            .unwrap();
        assert_eq!(call(&old, Sysno::ptrace, [0; 6]), EPERM);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn compat_architectures() {
        use syscalls::x86::Sysno as I386;
        let p = filter(&DOCKER_CAPS).unwrap();
        let i386 = |nr: I386, args| run(&p, Arch::X86.audit(), nr.id() as u32, args);
        assert_eq!(i386(I386::getpid, [0; 6]), ALLOW);
        assert_eq!(i386(I386::socketcall, [0; 6]), ALLOW);
        assert_eq!(i386(I386::mount, [0; 6]), EPERM);
        assert_eq!(i386(I386::personality, [0xffff_ffff, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(i386(I386::personality, [0x0040000, 0, 0, 0, 0, 0]), EPERM);
        let newuser = libc::CLONE_NEWUSER as u64;
        assert_eq!(i386(I386::clone, [newuser, 0, 0, 0, 0, 0]), EPERM);
        // arch_prctl and modify_ldt are included for amd64.
        assert_eq!(call(&p, Sysno::arch_prctl, [0; 6]), ALLOW);
        assert_eq!(call(&p, Sysno::modify_ldt, [0; 6]), ALLOW);
        // x32 calls get the default action.
        let x32_getpid = 0x4000_0000 | Sysno::getpid.id() as u32;
        assert_eq!(run(&p, Arch::X86_64.audit(), x32_getpid, [0; 6]), EPERM);
    }

    #[test]
    fn kernel_versions() {
        let v = |k, m| KernelVersion {
            kernel: k,
            major: m,
        };
        assert_eq!(parse_release("6.1.0-18-amd64").unwrap(), v(6, 1));
        assert_eq!(parse_release("3.12-1-amd64").unwrap(), v(3, 12));
        assert_eq!(parse_release("4.8").unwrap(), v(4, 8));
        assert!(parse_release("linux").is_err());
        assert!(running_kernel().unwrap() >= v(3, 0));
        assert_eq!(KernelVersion::try_from("5.8".to_string()).unwrap(), v(5, 8));
        for bad in ["5", "5.8.1", "0.0", "300.1", "a.b"] {
            assert!(KernelVersion::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_profiles() {
        let p = from_json(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"name": "kill", "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                          {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]},
                {"names": ["no_such_syscall"], "action": "SCMP_ACT_KILL"}
            ]}"#,
        )
        .unwrap()
        .compile(&[])
        .unwrap()
        .unwrap();
        let eacces = libc::SECCOMP_RET_ERRNO | libc::EACCES as u32;
        assert_eq!(call(&p, Sysno::mkdirat, [0; 6]), eacces);
        assert_eq!(call(&p, Sysno::getpid, [0; 6]), ALLOW);
        // Two conditions on one argument are an OR, as under runc.
        assert_eq!(call(&p, Sysno::kill, [1, 9, 0, 0, 0, 0]), EPERM);
        assert_eq!(call(&p, Sysno::kill, [1, 15, 0, 0, 0, 0]), EPERM);
        assert_eq!(call(&p, Sysno::kill, [1, 1, 0, 0, 0, 0]), ALLOW);
        // An allowing default gets no ENOSYS stub.
        assert_eq!(run(&p, native().audit(), 1000, [0; 6]), ALLOW);

        // Nothing at all: unconfined, as with moby.
        assert!(from_json("{}").unwrap().compile(&[]).unwrap().is_none());
        let err = |text: &str| from_json(text).and_then(|p| p.compile(&[])).unwrap_err();
        assert!(matches!(
            err(
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}"#
            ),
            SeccompError::Invalid(_)
        ));
        assert!(matches!(
            err(
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#
            ),
            SeccompError::Invalid(_)
        ));
        assert!(matches!(
            err(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#),
            SeccompError::UnsupportedAction(_)
        ));
        assert!(matches!(
            err(
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#
            ),
            SeccompError::ArgumentIndex(6)
        ));
        assert!(matches!(
            err(
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}}]}"#
            ),
            SeccompError::Json(_)
        ));
        assert!(matches!(err("not json"), SeccompError::Json(_)));
    }

    #[test]
    fn security_opt_values() {
        assert_eq!(
            Profile::from_option("unconfined").unwrap(),
            Profile::Unconfined
        );
        assert_eq!(Profile::from_option("builtin").unwrap(), Profile::Default);
        assert_eq!(
            Profile::from_option("/p.json").unwrap(),
            Profile::File("/p.json".into())
        );
        assert!(Profile::from_option("").is_err());
        assert!(Profile::Unconfined.compile(&DOCKER_CAPS).unwrap().is_none());
        assert_eq!(
            Profile::Default.compile(&DOCKER_CAPS).unwrap().unwrap(),
            filter(&DOCKER_CAPS).unwrap()
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("profile.json");
        std::fs::write(&file, DEFAULT_PROFILE).unwrap();
        assert_eq!(
            Profile::File(file).compile(&DOCKER_CAPS).unwrap().unwrap(),
            filter(&DOCKER_CAPS).unwrap()
        );
        assert!(matches!(
            Profile::File(dir.path().join("missing")).load(),
            Err(SeccompError::Read { .. })
        ));
    }

    /// The filter in a real process: a forked child installs it and tries
    /// what it allows and denies; its exit code says which check failed.
    #[test]
    fn applies_in_a_child() {
        let program = filter(&DOCKER_CAPS).unwrap();
        let root = nix::unistd::geteuid().is_root();
        // SAFETY: the child makes raw syscalls only (no allocation, no
        // locks another thread of the test harness may hold) and _exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(0);
                // SAFETY: raw syscalls with integer arguments; _exit ends
                // the child without running the parent's destructors.
                unsafe {
                    // Without root, no_new_privs is what permits the filter.
                    if !root && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        libc::_exit(10);
                    }
                    if apply(&program).is_err() {
                        libc::_exit(11);
                    }
                    if libc::unshare(libc::CLONE_NEWUSER) != -1 || errno() != libc::EPERM {
                        libc::_exit(12);
                    }
                    if libc::syscall(libc::SYS_getpid) != i64::from(libc::getpid()) {
                        libc::_exit(13);
                    }
                    if libc::syscall(libc::SYS_clone3, 0, 0) != -1 || errno() != libc::ENOSYS {
                        libc::_exit(14);
                    }
                    if libc::personality(0xffff_ffff) == -1 {
                        libc::_exit(15);
                    }
                    if libc::personality(0x0040000) != -1 || errno() != libc::EPERM {
                        libc::_exit(16);
                    }
                    libc::_exit(0)
                }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Exited(child, 0),
                    "exit codes: 10 prctl, 11 apply, 12 unshare, 13 getpid, 14 clone3, 15 and 16 personality"
                );
            }
        }
    }
}
