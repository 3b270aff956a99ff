//! The same container behaviour as a user that is not root: kiln maps the
//! caller to root in a user namespace. Run as a throwaway user made here
//! (CI is root, so it can make one) through runuser.

use crate::util::{busybox_tar, need_root, need_tool, text};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const USER: &str = "kiln-rootless-test";
/// A second throwaway user, given subordinate ids (as `useradd` gives a
/// login user on Debian): kiln maps them through newuidmap.
const SUB_USER: &str = "kiln-subid-test";
/// Its first subordinate uid and gid: container id N is host id
/// SUB_FIRST + N - 1.
const SUB_FIRST: u32 = 400000;

/// A directory the throwaway user owns, holding a copy of kiln and a store
/// with `box:1` imported by that user.
fn home() -> Option<&'static Path> {
    static HOME: OnceLock<Option<PathBuf>> = OnceLock::new();
    HOME.get_or_init(|| make_home(USER, None)).as_deref()
}

/// The same for [`SUB_USER`], its ranges given, one for each test (whose
/// store's user namespace holder is killed when the returned guard
/// drops); `box:1` is busybox with Docker Hub's /etc/passwd.
pub(crate) fn subid_home() -> Option<(PathBuf, KillHolder)> {
    if !need_tool("newuidmap", "uidmap's newuidmap maps subordinate ids") {
        return None;
    }
    let dir = make_home(SUB_USER, Some(SUB_FIRST))?;
    Some((dir.clone(), KillHolder(dir)))
}

/// kiln as [`SUB_USER`] on the store in `dir`.
pub(crate) fn as_sub_user(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    run_as(SUB_USER, dir, args, env)
}

fn make_home(user: &str, subids: Option<u32>) -> Option<PathBuf> {
    if !need_root("making a throwaway user")
        || !need_tool("runuser", "util-linux runuser switches to it")
    {
        return None;
    }
    let tar = match subids {
        Some(_) => crate::util::busybox_docker_tar()?,
        None => busybox_tar()?,
    };
    let exists = Command::new("id")
        .arg(user)
        .output()
        .is_ok_and(|o| o.status.success());
    {
        let _etc = crate::util::changing_users();
        if !exists {
            let out = Command::new("useradd")
                .args(["--system", "--no-create-home", "--shell", "/bin/sh", user])
                .output()
                .expect("useradd");
            assert!(out.status.success(), "useradd: {}", text(&out.stderr));
        }
        let given = std::fs::read_to_string("/etc/subuid")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{user}:")));
        if let Some(first) = subids.filter(|_| !given) {
            let range = format!("{first}-{}", first + 65535);
            let out = Command::new("usermod")
                .args(["--add-subuids", &range, "--add-subgids", &range, user])
                .output()
                .expect("usermod");
            assert!(out.status.success(), "usermod: {}", text(&out.stderr));
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("kiln-rootless")
        .tempdir_in("/tmp")
        .expect("tempdir")
        .keep();
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), dir.join("kiln")).expect("copy kiln");
    std::fs::copy(tar, dir.join("busybox.tar")).expect("copy tar");
    std::fs::create_dir(dir.join("vol")).unwrap();
    let status = Command::new("chown")
        .args(["-R", user])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run_as(
        user,
        &dir,
        &["import", "busybox.tar", "box:1", "-c", "CMD [\"sh\"]"],
        &[],
    );
    assert!(
        out.status.success(),
        "rootless import: {}",
        text(&out.stderr)
    );
    Some(dir)
}

fn as_user(dir: &Path, args: &[&str]) -> Output {
    run_as(USER, dir, args, &[])
}

/// kiln with `args` as `user`, on the store in `dir`, with `env` added.
pub(crate) fn run_as(user: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("runuser")
        .args(["-u", user, "--"])
        .arg(dir.join("kiln"))
        .arg("--root")
        .arg(dir.join("store"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .expect("runuser")
}

fn sh(dir: &Path, flags: &[&str], script: &str) -> Output {
    let mut args = vec!["run", "--rm"];
    args.extend(flags);
    args.extend(["box:1", "sh", "-c", script]);
    as_user(dir, &args)
}

#[test]
fn rootless_container_is_isolated_and_root_inside() {
    let Some(dir) = home() else { return };
    let out = sh(
        dir,
        &["--hostname", "rl"],
        "id -u; hostname; ps -o pid,comm > /tmp/ps; tail -n +2 /tmp/ps | tr -s ' ' | tr '\\n' ,; echo; echo hi > /tmp/f; cat /tmp/f; exit 4",
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "0", "the caller is root inside");
    assert_eq!(lines[1], "rl");
    assert!(
        lines[2].trim().starts_with("1 kiln-init, 2 sh,"),
        "{lines:?}"
    );
    assert_eq!(lines[3], "hi");
    // The process has 0, 1 and 2 only: ls run as the container's process
    // (no shell, whose own redirections and pipes come and go) shows
    // those and the directory it reads.
    let out = as_user(dir, &["run", "--rm", "box:1", "ls", "/proc/self/fd"]);
    assert_eq!(text(&out.stdout), "0\n1\n2\n3\n", "{}", text(&out.stderr));
}

#[test]
fn rootless_network_readonly_volumes_and_exit_codes() {
    let Some(dir) = home() else { return };
    assert_eq!(
        text(&sh(dir, &["--network", "none"], "ls /sys/class/net").stdout),
        "lo\n"
    );
    let out = sh(dir, &["--read-only"], "touch /x");
    assert!(
        text(&out.stderr).contains("Read-only file system"),
        "{}",
        text(&out.stderr)
    );
    let vol = format!("{}:/data", dir.join("vol").display());
    assert!(sh(dir, &["-v", &vol], "echo w > /data/f").status.success());
    assert_eq!(std::fs::read_to_string(dir.join("vol/f")).unwrap(), "w\n");
    assert_eq!(sh(dir, &[], "kill -TERM $$").status.code(), Some(143));
    assert_eq!(
        as_user(dir, &["run", "--rm", "box:1", "nosuch"])
            .status
            .code(),
        Some(127)
    );
    let out = as_user(dir, &["run", "--rm", "-m", "32m", "box:1", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr),
        "error: resource limits need cgroups: run kiln as root, or rootless on cgroup v2 from a subtree delegated to the user (systemd's user@UID.service: `systemd-run --user --scope kiln ...`) for --memory, --memory-swap, --cpus, --cpu-shares, --cpuset-cpus, --pids-limit and --device-cgroup-rule\n"
    );
    let out = as_user(dir, &["run", "--rm", "-u", "app", "box:1", "true"]);
    assert_eq!(
        text(&out.stderr),
        "error: user 1000:1000 is not mapped: rootless kiln maps only the caller, as root, without subordinate ids in /etc/subuid and /etc/subgid (`kiln doctor` says how to add them)\n"
    );
    // --rm leaves nothing, even overlay's mode-000 work directory (the
    // containers left are the lifecycle test's, kept on purpose, in the
    // same store).
    // Other tests of this store run --rm containers of their own at the
    // same time: theirs are gone moments later, so the store is asked
    // again for a while before anything left counts.
    let leftovers = || -> Vec<PathBuf> {
        std::fs::read_dir(dir.join("store/containers"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .filter(|p| !p.join("config.json").exists() || p.join("auto-remove").exists())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !leftovers().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(leftovers(), Vec::<PathBuf>::new());
}

/// The container lifecycle as a user: `run -d` with its monitor, `ps`,
/// `logs`, `exec`, a restart policy, `stop`, `rm`, volumes.
#[test]
fn rootless_containers_outlive_the_command() {
    let Some(dir) = home() else { return };
    let ok = |args: &[&str]| {
        let out = as_user(dir, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let id = ok(&[
        "run",
        "-d",
        "--name",
        "r-web",
        "box:1",
        "sh",
        "-c",
        "echo up; exec sleep 100",
    ]);
    assert_eq!(id.trim().len(), 64);
    let ps = ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.lines().any(|l| l.starts_with("r-web Up ")), "{ps}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ok(&["logs", "r-web"]) != "up\n" {
        assert!(std::time::Instant::now() < deadline, "no log");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // exec joins its user namespace first, then the others.
    assert_eq!(
        ok(&[
            "exec",
            "r-web",
            "sh",
            "-c",
            "id -u; ps -o args | grep -c '^sleep'"
        ]),
        "0\n1\n"
    );
    assert_eq!(
        as_user(dir, &["exec", "r-web", "sh", "-c", "exit 5"])
            .status
            .code(),
        Some(5)
    );
    assert_eq!(ok(&["stop", "-t", "1", "r-web"]), "r-web\n");
    ok(&[
        "run",
        "-d",
        "--name",
        "r-flaky",
        "--restart",
        "on-failure:2",
        "box:1",
        "sh",
        "-c",
        "exit 1",
    ]);
    assert_eq!(ok(&["wait", "r-flaky"]).trim(), "1");
    // Named, not --rm: another test of this store counts --rm leftovers.
    ok(&[
        "run",
        "--name",
        "r-w1",
        "-v",
        "r-data:/d",
        "box:1",
        "sh",
        "-c",
        "echo kept > /d/f",
    ]);
    assert_eq!(
        ok(&[
            "run",
            "--name",
            "r-w2",
            "-v",
            "r-data:/d",
            "box:1",
            "cat",
            "/d/f"
        ]),
        "kept\n"
    );
    ok(&["rm", "-f", "r-web", "r-flaky", "r-w1", "r-w2"]);
    ok(&["volume", "rm", "r-data"]);
    assert!(!ok(&["ps", "-a", "--format", "{{.Names}}"]).contains("r-"));
}

/// Networks and published ports as a user (inside a network namespace the
/// test makes): the bridge lives in kiln's per-user network namespace,
/// held by a pause process, and the containers' namespaces are made in its
/// user namespace; names and aliases resolve, a web server answers by its
/// alias and through a published port, and nothing is left in the test's
/// namespace.
#[test]
fn rootless_networks_and_published_ports() {
    let Some(dir) = home() else { return };
    let _holder = KillHolder(dir.to_path_buf());
    networks_and_ports(USER, dir);
}

/// The same with subordinate ids, where kiln runs in the holder's user
/// namespace itself (and pasta joins its network namespace only).
#[test]
fn subordinate_ids_networks_and_published_ports() {
    let Some((dir, _holder)) = subid_home() else {
        return;
    };
    networks_and_ports(SUB_USER, &dir);
}

fn networks_and_ports(name: &str, dir: &Path) {
    let Some(ns) = crate::networks::Netns::new() else {
        return;
    };
    let user = |args: &[&str]| {
        ns.enter("runuser")
            .args(["-u", name, "--"])
            .arg(dir.join("kiln"))
            .arg("--root")
            .arg(dir.join("store"))
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .output()
            .expect("runuser")
    };
    let ok = |args: &[&str]| {
        let out = user(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "rootless web\n").unwrap();
    let www = format!("{}:/www:ro", dir.join("www").display());
    ok(&["network", "create", "--subnet", "10.89.60.0/24", "r-net"]);
    ok(&[
        "run",
        "-d",
        "--name",
        "nsrv",
        "--network",
        "r-net",
        "--network-alias",
        "web",
        "-p",
        "127.0.0.1:18581:80",
        "-v",
        &www,
        "box:1",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let out = ok(&[
        "run",
        "--rm",
        "--network",
        "r-net",
        "box:1",
        "sh",
        "-c",
        "id -u; ip -4 -o addr show eth0 | tr -s ' ' | cut -d' ' -f4; wget -q -O - http://web/; nslookup nsrv.r-net | grep -A1 ^Name",
    ]);
    assert_eq!(
        out,
        "0\n10.89.60.3/32\nrootless web\nName:\tnsrv.r-net\nAddress: 10.89.60.2\n"
    );
    let got = ns
        .sh("busybox wget -q -O - http://127.0.0.1:18581/")
        .output()
        .unwrap();
    assert_eq!(text(&got.stdout), "rootless web\n", "{}", text(&got.stderr));
    assert!(
        !ns.links()
            .iter()
            .any(|l| l.starts_with("kb-") || l.starts_with("kv")),
        "the bridge is in the holder's namespace: {:?}",
        ns.links()
    );
    ok(&["rm", "-f", "nsrv"]);
    assert_eq!(ok(&["network", "rm", "r-net"]), "r-net\n");

    // --nat: out through pasta, to a server in a second namespace that is
    // the test namespace's default gateway (TEST-NET-1 addresses).
    if crate::util::need_tool("pasta", "passt's pasta is a rootless network's way out") {
        let outside = crate::networks::Netns::new().unwrap();
        let link = format!(
            "ip link add up0 type veth peer name up1 netns {o} && ip addr add 192.0.2.1/24 dev up0 && ip link set up0 up && ip -n {o} addr add 192.0.2.2/24 dev up1 && ip -n {o} link set up1 up && ip route add default via 192.0.2.2",
            o = outside.name
        );
        assert!(ns.sh(&link).status().unwrap().success());
        let mut server = outside
            .sh(&format!(
                "exec busybox httpd -f -p 192.0.2.2:8000 -h {}",
                dir.join("www").display()
            ))
            .spawn()
            .unwrap();
        // pasta opens /dev/net/tun as the user: Debian's udev makes it
        // 0666; this machine may not. Its mode is put back after.
        let tun = std::path::Path::new("/dev/net/tun");
        let mode = std::fs::metadata(tun).unwrap().permissions();
        std::fs::set_permissions(tun, std::fs::Permissions::from_mode(0o20666)).unwrap();
        ok(&[
            "network",
            "create",
            "--nat",
            "--subnet",
            "10.89.61.0/24",
            "r-out",
        ]);
        ok(&["network", "create", "--subnet", "10.89.62.0/24", "r-closed"]);
        let fetch = |net: &str| {
            user(&[
                "run",
                "--rm",
                "--network",
                net,
                "box:1",
                "sh",
                "-c",
                "timeout 5 wget -q -O - http://192.0.2.2:8000/",
            ])
        };
        let out = fetch("r-out");
        let closed = fetch("r-closed");
        std::fs::set_permissions(tun, mode).unwrap();
        let _ = server.kill();
        let _ = server.wait();
        assert_eq!(text(&out.stdout), "rootless web\n", "{}", text(&out.stderr));
        assert!(!closed.status.success(), "no --nat, no way out");
        ok(&["network", "rm", "r-out", "r-closed"]);
    }
}

/// Kills the network holder of the store in its directory when dropped
/// (a test that fails leaves no pause process).
pub(crate) struct KillHolder(PathBuf);

impl Drop for KillHolder {
    fn drop(&mut self) {
        let Ok(bytes) = std::fs::read(self.0.join("store/networks/.holder.json")) else {
            return;
        };
        let Ok(holder) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-9", &holder["pid"].to_string()])
            .status();
    }
}

/// `kiln doctor` as a user without subordinate ranges (the throwaway
/// user is a system user: useradd gives it none): user namespaces work,
/// the missing ranges are named with the command that adds them, and
/// limits are said to need root.
#[test]
fn doctor_as_a_user_without_uid_ranges() {
    let Some(dir) = home() else { return };
    let listed = std::fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&format!("{USER}:")));
    assert!(
        !listed,
        "{USER} has ranges in /etc/subuid: the test needs a user without"
    );
    let out = as_user(dir, &["doctor", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    let find = |check: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == check)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        find("user namespaces")["detail"],
        "a user namespace can be made"
    );
    let ranges = find("uid ranges");
    assert_eq!(ranges["status"], "warn");
    assert_eq!(
        ranges["detail"],
        format!(
            "{USER} has no subordinate uids or gids in /etc: only the caller's own id can be mapped"
        )
    );
    assert_eq!(
        ranges["fix"],
        format!("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {USER} (as root)")
    );
    assert!(
        find("cgroups")["detail"]
            .as_str()
            .unwrap()
            .ends_with("rootless kiln sets no limits (-m, --cpus, --pids-limit need root)")
    );
    assert_eq!(find("isolation")["status"], "ok", "{v}");
}

/// Rootless with subordinate ids (issue 28): a Dockerfile that adds a
/// user, chowns to it and to ids it does not name, `COPY --chown` and
/// `USER`: the owners are kept as a root build keeps them (the same image
/// id with SOURCE_DATE_EPOCH), the store holds them as the user's
/// subordinate ids on the host, `run -u` and `exec -u` take them, a
/// container running as another id is stopped and removed by the next
/// kiln, and the store refuses the one-id map afterwards.
#[test]
fn subordinate_ids_keep_owners_as_a_root_build_does() {
    let Some((dir, _holder)) = subid_home() else {
        return;
    };
    let ok = |args: &[&str]| {
        let out = as_sub_user(&dir, args, &[("SOURCE_DATE_EPOCH", "1700000000")]);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let ctx = dir.join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("a"), "hi\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM box:1\n\
         RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group \\\n\
         \t&& mkdir -p /home/app /data && chown app:app /home/app /data && touch /data/f && chown 1234:5678 /data/f\n\
         COPY --chown=1000:1000 a /a\n\
         USER app\n\
         RUN id > /home/app/id && touch /home/app/x\n",
    )
    .unwrap();
    let status = Command::new("chown")
        .args(["-R", SUB_USER])
        .arg(&ctx)
        .status()
        .unwrap();
    assert!(status.success());
    let id = ok(&["build", "-q", "-t", "owned:1", "ctx"]);
    let shown = ok(&[
        "run",
        "--rm",
        "owned:1",
        "sh",
        "-c",
        "id; cat /home/app/id; stat -c '%u:%g %n' /a /data /data/f /home/app /home/app/x /home/app/id /bin/sh",
    ]);
    assert_eq!(
        shown,
        "uid=1000(app) gid=1000(app) groups=1000(app)\n\
         uid=1000(app) gid=1000(app) groups=1000(app)\n\
         1000:1000 /a\n1000:1000 /data\n1234:5678 /data/f\n1000:1000 /home/app\n\
         1000:1000 /home/app/x\n1000:1000 /home/app/id\n0:0 /bin/sh\n"
    );
    assert_eq!(
        ok(&["run", "--rm", "-u", "0", "owned:1", "id", "-u"]),
        "0\n"
    );
    // On the host, the step's file belongs to the subordinate id the map
    // gives container uid 1000.
    let x = Command::new("find")
        .arg(dir.join("store/snapshots"))
        .args(["-path", "*/home/app/x", "-printf", "%U:%G\n"])
        .output()
        .unwrap();
    let host_id = SUB_FIRST + 999;
    assert_eq!(text(&x.stdout), format!("{host_id}:{host_id}\n"));

    // A root build of the same Dockerfile on the same base: the same id.
    let base = dir.join("box.tar");
    ok(&["save", "-o", base.to_str().unwrap(), "box:1"]);
    let root_store = tempfile::tempdir().unwrap();
    let root = root_store.path().to_str().unwrap();
    let out = crate::util::kiln()
        .args(["--root", root, "load", "-i"])
        .arg(&base)
        .output()
        .unwrap();
    assert!(out.status.success(), "load: {}", text(&out.stderr));
    let out = crate::util::kiln()
        .args(["--root", root, "build", "-q", "-t", "owned:1"])
        .arg(&ctx)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(out.status.success(), "root build: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), id, "rootless and root builds differ");

    // A container running as app, reached by the kilns after the one that
    // started it (signals cross only inside one user namespace).
    ok(&[
        "run", "-d", "--name", "as-app", "-u", "app", "owned:1", "sleep", "1000",
    ]);
    assert_eq!(ok(&["exec", "as-app", "id", "-u"]), "1000\n");
    assert_eq!(ok(&["exec", "-u", "1234", "as-app", "id", "-u"]), "1234\n");
    ok(&["exec", "-u", "0", "as-app", "chown", "1234:5678", "/a"]);
    let out = as_sub_user(&dir, &["commit", "as-app", "owned:2"], &[]);
    assert!(
        text(&out.stderr)
            .contains("rootless kiln has no cgroup freezer: commit with --pause=false"),
        "{}",
        text(&out.stderr)
    );
    ok(&["commit", "--pause=false", "as-app", "owned:2"]);
    assert_eq!(
        ok(&["run", "--rm", "owned:2", "stat", "-c", "%u:%g", "/a"]),
        "1234:5678\n"
    );
    ok(&["stop", "-t", "1", "as-app"]);
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "--type", "container", "as-app"])).unwrap();
    assert_eq!(shown[0]["State"]["Status"], "exited", "{shown}");
    ok(&["rm", "as-app"]);
    assert_eq!(ok(&["ps", "-aq"]), "");
    // What the map wrote is removed by the same map.
    ok(&["rmi", "owned:1", "owned:2"]);
    ok(&["prune"]);
    let left = Command::new("find")
        .arg(dir.join("store/snapshots"))
        .args(["-mindepth", "1", "-maxdepth", "1"])
        .output()
        .unwrap();
    assert_eq!(
        text(&left.stdout).lines().count(),
        1,
        "only box:1's snapshot is left"
    );

    // The one-id map on this store would lose what it keeps.
    let out = as_sub_user(&dir, &["images"], &[("KILN_USERNS", "single")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {} was written with the caller's subordinate ids mapped, and kiln now maps only the caller's id: its layers would keep the wrong owners; unset KILN_USERNS (=single keeps the one-id map), or use a new --root\n",
            dir.join("store").display()
        )
    );
}

/// A store written with one id (before the user had ranges, or with
/// KILN_USERNS=single) keeps the one-id map once ranges exist, rather than
/// refusing every command: its layers lost their owners already.
#[test]
fn a_one_id_store_keeps_its_map_when_ranges_come() {
    let Some((dir, _holder)) = subid_home() else {
        return;
    };
    let kiln_on = |store: &str, args: &[&str], env: &[(&str, &str)]| {
        Command::new("runuser")
            .args(["-u", SUB_USER, "--"])
            .arg(dir.join("kiln"))
            .arg("--root")
            .arg(dir.join(store))
            .args(args)
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .output()
            .expect("runuser")
    };
    let out = kiln_on(
        "old",
        &["import", "busybox.tar", "old:1"],
        &[("KILN_USERNS", "single")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.join("old/ids")).unwrap(),
        "caller\n"
    );
    let out = kiln_on("old", &["run", "--rm", "old:1", "id", "-u"], &[]);
    assert_eq!(text(&out.stdout), "0\n", "{}", text(&out.stderr));
    let out = kiln_on("old", &["run", "--rm", "-u", "1000", "old:1", "true"], &[]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr)
            .starts_with("error: user 1000:0 is not mapped: rootless kiln maps only the caller"),
        "{}",
        text(&out.stderr)
    );
}

/// A holder killed while a container of its namespace runs as another
/// id: the next kiln joins the container's namespace (a new one could
/// not signal it), says so, and execs into and stops it.
#[test]
fn a_container_outlives_its_holder() {
    let Some((dir, _holder)) = subid_home() else {
        return;
    };
    let ok = |args: &[&str]| {
        let out = as_sub_user(&dir, args, &[]);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        out
    };
    ok(&[
        "run", "-d", "--name", "orphan", "-u", "1000", "box:1", "sleep", "1000",
    ]);
    let holder: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("store/networks/.holder.json")).unwrap())
            .unwrap();
    let killed = Command::new("kill")
        .args(["-9", &holder["pid"].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Reaped by init once killed: wait until its pid is gone.
    let proc_dir = PathBuf::from(format!("/proc/{}", holder["pid"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while proc_dir.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = ok(&["exec", "orphan", "id", "-u"]);
    assert_eq!(text(&out.stdout), "1000\n");
    assert!(
        text(&out.stderr)
            .contains("run in the user namespace of a holder that ended: this kiln joins theirs"),
        "{}",
        text(&out.stderr)
    );
    ok(&["stop", "-t", "1", "orphan"]);
    ok(&["rm", "orphan"]);
}
