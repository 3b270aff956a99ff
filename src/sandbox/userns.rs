//! Rootless with the user's subordinate ids, as Podman runs: one user
//! namespace per store maps the caller to root and the ranges
//! `/etc/subuid` and `/etc/subgid` give the user to ids 1..=N
//! (`newuidmap`/`newgidmap`, the set-uid helpers that alone may write such
//! a map). The store's holder process (`kiln __netns-holder`) keeps it;
//! every kiln command that touches the store joins it before its first
//! thread, so that unpacking, `COPY --chown`, commits and deletes set and
//! read the owners images carry, and so that the containers one kiln
//! starts are reachable (signals, `exec`) by the next.
//!
//! Without ranges (or without the helpers) kiln keeps the one-id map: each
//! container maps the caller alone, and files of other owners become the
//! caller's.

use nix::sched::{CloneFlags, setns};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Set in the environment of a kiln that joined its store's user
/// namespace (and so of the kilns it starts): the holder's pid.
const JOINED_ENV: &str = "_KILN_USERNS";
/// The paths checked ([`super::fs::private_dir`]'s rules) from the host's
/// user namespace before joining, JSON: inside, root's directories and
/// other users' look alike (the overflow id), so their checks are kept.
const VERIFIED_ENV: &str = "_KILN_USERNS_VERIFIED";

/// The ids a user namespace maps: the caller to 0, and one subordinate
/// range of uids and of gids to 1 onwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMap {
    /// The caller's uid on the host.
    pub uid: u32,
    /// The caller's gid on the host.
    pub gid: u32,
    /// The first subordinate uid and how many.
    pub uids: (u64, u64),
    /// The first subordinate gid and how many.
    pub gids: (u64, u64),
}

impl IdMap {
    /// `/proc/PID/uid_map`'s text for this map, as the kernel shows it.
    pub fn uid_map(&self) -> String {
        map_text(self.uid, self.uids)
    }

    /// `/proc/PID/gid_map`'s text for this map.
    pub fn gid_map(&self) -> String {
        map_text(self.gid, self.gids)
    }

    /// How many ids, root included, each side maps (the smaller).
    pub fn size(&self) -> u64 {
        1 + self.uids.1.min(self.gids.1)
    }

    /// Writes the map into `pid`'s new user namespace through newuidmap
    /// and newgidmap (run from the namespace's parent: this process).
    pub fn write(&self, pid: u32) -> io::Result<()> {
        for (tool, id, (first, count)) in [
            ("newuidmap", self.uid, self.uids),
            ("newgidmap", self.gid, self.gids),
        ] {
            let out = Command::new(tool)
                .arg(pid.to_string())
                .args(["0", &id.to_string(), "1"])
                .args(["1", &first.to_string(), &count.to_string()])
                .output()?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "{tool}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        Ok(())
    }
}

fn map_text(id: u32, (first, count): (u64, u64)) -> String {
    format!("0 {id} 1\n1 {first} {count}\n")
}

/// The ranges `text` (a subuid or subgid file) gives `name` or `uid`:
/// (first, count), in the file's order.
pub fn ranges(text: &str, name: &str, uid: u32) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            let (who, first, count) = (f.first()?, f.get(1)?, f.get(2)?);
            (*who == name || *who == uid.to_string())
                .then(|| Some((first.parse().ok()?, count.parse().ok()?)))?
        })
        .filter(|&(_, count): &(u64, u64)| count > 0)
        .collect()
}

/// The map for the calling user from `etc` (`/etc`): its first subuid and
/// subgid ranges; or why the one-id map is all kiln can make.
pub fn caller_map(etc: &Path) -> Result<IdMap, String> {
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    let first = |file: &str| {
        let text = std::fs::read_to_string(etc.join(file)).unwrap_or_default();
        ranges(&text, &name, uid.as_raw()).first().copied()
    };
    let (Some(uids), Some(gids)) = (first("subuid"), first("subgid")) else {
        return Err(format!(
            "{name} has no subordinate ids in {}/subuid and subgid",
            etc.display()
        ));
    };
    if !helpers_installed() {
        return Err(
            "newuidmap and newgidmap are not installed (Debian's and Ubuntu's package uidmap, Fedora's shadow-utils)"
                .into(),
        );
    }
    Ok(IdMap {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        uids,
        gids,
    })
}

/// True when newuidmap and newgidmap are installed.
pub fn helpers_installed() -> bool {
    which("newuidmap").is_some() && which("newgidmap").is_some()
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// True when this process runs in the host's user namespace (the identity
/// map of every id).
pub fn in_initial() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
}

/// True when this kiln runs in its store's user namespace, joined by
/// [`enter`] (here or in the kiln that started this one).
pub fn joined() -> bool {
    // The variable is set only once joined: until then nothing is cached.
    // It names the holder, which must be kiln's holder in this very user
    // namespace: set by hand elsewhere (root in a container's namespace),
    // it changes nothing.
    static JOINED: OnceLock<bool> = OnceLock::new();
    let Some(pid) = std::env::var_os(JOINED_ENV) else {
        return false;
    };
    *JOINED.get_or_init(|| {
        let pid = pid.to_string_lossy();
        let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/user")).ok();
        let holder = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            c.split(|b| *b == 0)
                .any(|a| a == b"__netns-holder" || a == b"__init")
        });
        !in_initial() && holder && ns(&pid).is_some() && ns(&pid) == ns("self")
    })
}

/// True when `dir` is one of the paths checked before joining, or a
/// directory above one: its owner reads as the overflow id here.
pub fn verified(dir: &Path) -> bool {
    static VERIFIED: OnceLock<Vec<PathBuf>> = OnceLock::new();
    if !joined() {
        return false;
    }
    let verified = VERIFIED.get_or_init(|| {
        std::env::var(VERIFIED_ENV)
            .ok()
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default()
    });
    verified.iter().any(|v| v.starts_with(dir))
}

/// Why the one-id map is used, when kiln runs rootless without joining;
/// said where it matters (an owner that cannot be kept, a `-u` refused).
pub fn single_reason() -> Option<&'static str> {
    SINGLE.get().map(String::as_str)
}

static SINGLE: OnceLock<String> = OnceLock::new();

/// Notes that a file's owner `uid:gid` could not be kept (the one-id
/// map): said once per process, with why and the fix.
pub fn owners_lost(uid: u32, gid: u32) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        eprintln!(
            "kiln: warning: files owned by {uid}:{gid} (and any owner but root) are kept as yours: rootless kiln maps one id ({}); `kiln doctor` says how to give the user subordinate ids",
            single_reason().unwrap_or("no subordinate ids")
        );
    });
}

/// How [`enter`] went.
#[derive(Debug, PartialEq, Eq)]
pub enum Entered {
    /// Root, already inside a user namespace, or joined before.
    NotNeeded,
    /// Joined the store's namespace mapping this many ids.
    Joined(u64),
    /// Kept the one-id map, for this reason.
    Single(String),
}

/// What a store says of the ids its files were written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Nothing yet (a new store).
    Nothing,
    /// Only the caller's id (its `ids` file, or a store from before it).
    Caller,
    /// The caller's subordinate ids.
    Subordinate,
}

/// What [`enter`] needs of the store at `root`, whose layout it does not
/// know: `secure` checks (or makes) its root from the host's user
/// namespace and says what it recorded; `holder` finds or starts the
/// holder with a map; `inits` are the pids of its containers' inits that
/// still run.
pub struct StoreHooks<S, H, I> {
    /// Secures the root; what the store recorded.
    pub secure: S,
    /// The holder, started with the map when none runs.
    pub holder: H,
    /// The inits of the store's running containers.
    pub inits: I,
}

/// Joins the user namespace of the store at `root` with the caller's
/// subordinate ids, starting its holder when none runs. `checked` are
/// paths besides the store that kiln may secure later (the API socket's
/// directory): their directories above are checked now, from the host's
/// user namespace. Must run before the process starts a thread. A store
/// written with one id keeps it; a new store without ranges, or whose
/// holder cannot be started, falls back to it, saying why.
pub fn enter<S, H, I, E>(
    root: &Path,
    checked: &[PathBuf],
    hooks: StoreHooks<S, H, I>,
) -> Result<Entered, String>
where
    S: FnOnce(&Path) -> Result<Recorded, String>,
    H: FnOnce(&IdMap) -> Result<super::process::Recorded, E>,
    E: std::fmt::Display,
    I: FnOnce() -> Vec<u32>,
{
    if nix::unistd::geteuid().is_root() || !in_initial() || joined() {
        return Ok(Entered::NotNeeded);
    }
    let single = |why: String| {
        let _ = SINGLE.set(why.clone());
        Ok(Entered::Single(why))
    };
    if std::env::var("KILN_USERNS").as_deref() == Ok("single") {
        return single("KILN_USERNS=single".into());
    }
    let recorded = (hooks.secure)(root)?;
    if recorded == Recorded::Caller {
        return single(format!(
            "{} was written with only the caller's id (a store made before kiln used subordinate ids, or without them): a new --root uses them",
            root.display()
        ));
    }
    let map = match (caller_map(Path::new("/etc")), recorded) {
        (Ok(m), _) => m,
        (Err(why), Recorded::Subordinate) => {
            return Err(format!(
                "{} was written with the caller's subordinate ids, and they cannot be mapped now: {why}",
                root.display()
            ));
        }
        (Err(why), _) => return single(why),
    };
    // Checked outside, where root's directories and other users' differ:
    // the path as given (symlinks on it included) and where it leads.
    let mut verified = Vec::new();
    for dir in std::iter::once(root).chain(checked.iter().map(PathBuf::as_path)) {
        if dir != root && super::fs::trusted_dir(dir).is_err() {
            continue;
        }
        if let Ok(absolute) = std::path::absolute(dir) {
            verified.push(absolute);
        }
        if let Ok(real) = std::fs::canonicalize(dir) {
            verified.push(real);
        }
    }
    // Containers still running in the namespace of a holder that ended
    // are reachable only from inside theirs: it is joined, not a new one.
    let (uid_map, gid_map) = (map.uid_map(), map.gid_map());
    let wanted = normalized(&uid_map);
    let orphan = (hooks.inits)().into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
            .is_ok_and(|m| normalized(&m) == wanted)
    });
    let held = match (hooks.holder)(&map).map_err(|e| e.to_string()) {
        Ok(h) => h,
        Err(e) if recorded == Recorded::Nothing && orphan.is_none() => {
            eprintln!("kiln: warning: {e}: keeping the one-id map");
            return single(e);
        }
        Err(e) => return Err(e),
    };
    let ns_of = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
    let target = match orphan {
        Some(pid) if ns_of(pid) != ns_of(held.pid) => {
            eprintln!(
                "kiln: warning: the store's containers run in the user namespace of a holder that ended: this kiln joins theirs (networks need a new holder: stop them to get one)"
            );
            pid
        }
        _ => held.pid,
    };
    let userns = std::fs::File::open(format!("/proc/{target}/ns/user"))
        .map_err(|e| format!("opening the store's user namespace: {e}"))?;
    // Read through the open namespace's process: the pid may have been
    // reused between the record and the open, so it is checked after.
    let uids = std::fs::read_to_string(format!("/proc/{target}/uid_map")).unwrap_or_default();
    let gids = std::fs::read_to_string(format!("/proc/{target}/gid_map")).unwrap_or_default();
    if !super::process::running(target) || (target == held.pid && !held.alive()) {
        return Err("the store's user namespace holder ended; run the command again".into());
    }
    if normalized(&uids) != wanted || normalized(&gids) != normalized(&gid_map) {
        if recorded == Recorded::Subordinate {
            return Err(format!(
                "the store's user namespace (held by pid {target}) maps other ids than {}'s subordinate ranges now: stop the store's containers, end pid {target}, and run the command again",
                map.uid
            ));
        }
        return single(format!(
            "the store's user namespace (held by pid {target}) was made with one id: stop the store's containers and end pid {target} to use the subordinate ids"
        ));
    }
    setns(userns.as_fd(), CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("joining the store's user namespace: {e}"))?;
    let verified = serde_json::to_string(&verified).unwrap_or_default();
    // SAFETY: the caller runs this before starting any thread, so nothing
    // reads the environment meanwhile.
    unsafe {
        std::env::set_var(JOINED_ENV, target.to_string());
        std::env::set_var(VERIFIED_ENV, verified);
    }
    Ok(Entered::Joined(map.size()))
}

fn normalized(map: &str) -> Vec<Vec<&str>> {
    map.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| !f.is_empty())
        .collect()
}

/// True when `uid` and `gid` are ids this process's user namespace maps
/// (always, in the host's; and where /proc cannot tell, as in a chroot
/// without it: then setuid says).
pub fn mapped(uid: u32, gid: u32) -> bool {
    let has = |file: &str, id: u32| {
        std::fs::read_to_string(file).map_or(true, |m| {
            normalized(&m).iter().any(|f| {
                let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
                matches!((n(0), n(2)), (Some(first), Some(count)) if (first..first + count).contains(&u64::from(id)))
            })
        })
    };
    has("/proc/self/uid_map", uid) && has("/proc/self/gid_map", gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_by_name_or_uid_in_order() {
        let text = "alice:100000:65536\n# comment\ncarol:200000:10\n1002:300000:5\nalice:400000:0\nbad:line\n";
        assert_eq!(ranges(text, "alice", 1000), [(100000, 65536)]);
        assert_eq!(ranges(text, "carol", 1001), [(200000, 10)]);
        assert_eq!(ranges(text, "bob", 1002), [(300000, 5)]);
        assert!(ranges(text, "dave", 1003).is_empty());
    }

    #[test]
    fn the_map_is_what_the_kernel_shows() {
        let m = IdMap {
            uid: 1000,
            gid: 1001,
            uids: (100000, 65536),
            gids: (200000, 1000),
        };
        assert_eq!(m.uid_map(), "0 1000 1\n1 100000 65536\n");
        assert_eq!(m.gid_map(), "0 1001 1\n1 200000 1000\n");
        assert_eq!(m.size(), 1001);
        let shown = "         0       1000          1\n         1     100000      65536\n";
        assert_eq!(normalized(shown), normalized(&m.uid_map()));
    }

    #[test]
    fn no_ranges_keeps_one_id_and_says_why() {
        let etc = tempfile::tempdir().unwrap();
        std::fs::write(etc.path().join("subuid"), "someone-else:100000:65536\n").unwrap();
        std::fs::write(etc.path().join("subgid"), "").unwrap();
        let why = caller_map(etc.path()).unwrap_err();
        assert!(why.contains("has no subordinate ids in"), "{why}");
    }

    #[test]
    fn the_caller_is_always_mapped_and_the_host_maps_every_id() {
        assert!(mapped(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw()
        ));
        if in_initial() {
            assert!(mapped(123456, 654321));
        }
        // Not the holder's namespace: the variable alone changes nothing.
        assert!(!joined());
    }
}
