//! Container networks (issue 14): `kiln network`, `run --network NAME`,
//! names and aliases resolved by each container's resolver in round
//! robin, `--internal`, connect and disconnect, UDP ports, and what a
//! killed kiln leaves.
//!
//! The network rule: every test that makes a bridge or gives a private
//! address does it inside a network namespace it makes first (`ip netns
//! add`, lo up) and runs kiln there, so no such address ever exists in the
//! host's own namespace and no packet leaves the machine.

use crate::registry::{free_port, k, ok, store_with_box};
use crate::util::{need_root, need_tool, text};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A network namespace made for one test, deleted (with whatever still
/// runs in it) when dropped.
pub(crate) struct Netns {
    pub(crate) name: String,
}

impl Netns {
    pub(crate) fn new() -> Option<Netns> {
        if !need_root("network namespaces and bridges need root")
            || !need_tool("ip", "iproute2 makes the test's network namespace")
        {
            return None;
        }
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("kiln-t{}-{n}", std::process::id());
        let run = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip");
            assert!(out.status.success(), "ip {args:?}: {}", text(&out.stderr));
        };
        run(&["netns", "add", &name]);
        run(&["-n", &name, "link", "set", "lo", "up"]);
        Some(Netns { name })
    }

    /// `program` to be run in the namespace's network (nsenter: `ip netns
    /// exec` would remount /sys and hide the cgroup mounts kiln needs).
    pub(crate) fn enter(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        c
    }

    /// `kiln --root ROOT args...` inside the namespace.
    fn kiln(&self, root: &Path, args: &[&str]) -> Output {
        self.enter(env!("CARGO_BIN_EXE_kiln"))
            .arg("--root")
            .arg(root)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("nsenter kiln")
    }

    fn ok(&self, root: &Path, args: &[&str]) -> String {
        ok(self.kiln(root, args))
    }

    /// The namespace's link names.
    pub(crate) fn links(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link"])
            .output()
            .unwrap();
        text(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    /// `cmd` run in the namespace, outside any container.
    pub(crate) fn sh(&self, script: &str) -> Command {
        let mut c = self.enter("sh");
        c.args(["-c", script]);
        c
    }

    /// Waits (30 s at most) until a TCP socket in this namespace listens
    /// on `port`: a server started in the background is ready then.
    pub(crate) fn wait_listening(&self, port: u16) {
        // /proc/net/tcp: `sl local_address rem_address st ...`, the port in
        // hex after the colon, 0A for LISTEN.
        let want = format!(":{port:04X}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.sh("cat /proc/net/tcp").output().unwrap();
            let listening = String::from_utf8_lossy(&out.stdout).lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
            });
            if listening {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing listens on port {port} in {}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // What a failed test left running there goes first.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in text(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn setup() -> Option<(Netns, tempfile::TempDir)> {
    let ns = Netns::new()?;
    let store = store_with_box()?;
    Some((ns, store))
}

fn inspect(ns: &Netns, root: &Path, name: &str) -> Value {
    let out = ns.ok(root, &["inspect", "--type", "container", name]);
    serde_json::from_str::<Value>(&out).unwrap()[0].clone()
}

fn ip_of(ns: &Netns, root: &Path, name: &str, net: &str) -> String {
    inspect(ns, root, name)["NetworkSettings"]["Networks"][net]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string()
}

fn kiln_links(ns: &Netns) -> Vec<String> {
    ns.links()
        .into_iter()
        .filter(|l| l.starts_with("kb-") || l.starts_with("kv"))
        .collect()
}

/// The seeds' scene: three web servers share the alias `web`; a client's
/// 30 requests to http://web/ are answered by all three, 10 each, because
/// the resolver rotates the answer on every query; a stopped backend
/// leaves the answers at once; names, ids and NAME.NETWORK resolve;
/// unknown names fail fast; everything goes with the last container.
#[test]
fn an_alias_shared_by_three_backends_is_answered_in_round_robin() {
    let Some((ns, store)) = setup() else {
        return;
    };
    let root = store.path();
    let id = ns.ok(root, &["network", "create", "appnet"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let www = tempfile::tempdir().unwrap();
    for i in 1..=3 {
        let dir = www.path().join(format!("b{i}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("backend {i}\n")).unwrap();
        let vol = format!("{}:/www:ro", dir.display());
        ns.ok(
            root,
            &[
                "run",
                "-d",
                "--name",
                &format!("web{i}"),
                "--network",
                "appnet",
                "--network-alias",
                "web",
                "-v",
                &vol,
                "box:1",
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
                "/www",
            ],
        );
    }
    let ips: Vec<String> = (1..=3)
        .map(|i| ip_of(&ns, root, &format!("web{i}"), "appnet"))
        .collect();
    assert_eq!(
        ips,
        ["10.89.0.2", "10.89.0.3", "10.89.0.4"],
        "the IPAM's order"
    );
    let net: Value = serde_json::from_str(&ns.ok(root, &["network", "inspect", "appnet"])).unwrap();
    assert_eq!(net[0]["IPAM"]["Config"][0]["Subnet"], "10.89.0.0/24");
    assert_eq!(net[0]["IPAM"]["Config"][0]["Gateway"], "10.89.0.1");
    assert_eq!(net[0]["Containers"].as_object().unwrap().len(), 3);

    let client = r#"
        cat /etc/resolv.conf
        echo ---
        for i in $(seq 30); do timeout 5 wget -q -O - http://web/ || echo failed; done
        echo ---
        nslookup web1 | grep -A1 '^Name'
        nslookup web2.appnet | grep -A1 '^Name'
        start=$(date +%s)
        timeout 5 wget -q -O - http://nosuchname/ 2>&1
        echo "unknown took $(( $(date +%s) - start ))s"
    "#;
    let out = ns.ok(
        root,
        &[
            "run",
            "--rm",
            "--network",
            "appnet",
            "box:1",
            "sh",
            "-c",
            client,
        ],
    );
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(
        parts[0], "nameserver 127.0.0.11\noptions ndots:0\n",
        "{out}"
    );
    for i in 1..=3 {
        let n = parts[1]
            .lines()
            .filter(|l| *l == format!("backend {i}"))
            .count();
        assert_eq!(n, 10, "backend {i} answered {n} of 30:\n{}", parts[1]);
    }
    assert!(
        parts[2].contains("Name:\tweb1\nAddress: 10.89.0.2")
            && parts[2].contains("Name:\tweb2.appnet\nAddress: 10.89.0.3"),
        "{out}"
    );
    assert!(parts[2].contains("bad address 'nosuchname'"), "{out}");
    assert!(
        parts[2].contains("unknown took 0s") || parts[2].contains("unknown took 1s"),
        "an unknown name fails fast: {out}"
    );

    // A backend stopped leaves the answers at once.
    ns.ok(root, &["stop", "-t", "1", "web2"]);
    let out = ns.ok(
        root,
        &[
            "run",
            "--rm",
            "--network",
            "appnet",
            "box:1",
            "sh",
            "-c",
            "for i in $(seq 6); do timeout 5 wget -q -O - http://web/ || echo failed; done; nslookup web2 >/dev/null 2>&1 || echo web2 gone",
        ],
    );
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "backend 1",
            "backend 1",
            "backend 1",
            "backend 3",
            "backend 3",
            "backend 3",
            "web2 gone"
        ],
        "{out}"
    );

    // The container's own /etc/hosts names its address.
    let hosts = ns.ok(root, &["exec", "web1", "cat", "/etc/hosts"]);
    let hostname = ns.ok(root, &["exec", "web1", "hostname"]);
    assert!(
        hosts.contains(&format!("10.89.0.2\t{}", hostname.trim())),
        "{hosts}"
    );

    // Removed while in use: refused; after the last container: nothing left.
    let out = ns.kiln(root, &["network", "rm", "appnet"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("has active endpoints (web1, web3)"),
        "{}",
        text(&out.stderr)
    );
    ns.ok(root, &["rm", "-f", "web1", "web2", "web3"]);
    assert_eq!(
        kiln_links(&ns),
        Vec::<String>::new(),
        "the bridge goes with the last container"
    );
    let endpoints = root.join("networks/appnet/endpoints");
    assert_eq!(std::fs::read_dir(&endpoints).unwrap().count(), 0);
    assert_eq!(ns.ok(root, &["network", "rm", "appnet"]), "appnet\n");
    assert_eq!(ns.ok(root, &["network", "ls", "-q"]), "");
}

/// `--internal`: no gateway, no route out, names of its own only; a
/// normal network reaches the host side through its gateway.
#[test]
fn an_internal_network_has_no_way_out() {
    let Some((ns, store)) = setup() else {
        return;
    };
    let root = store.path();
    ns.ok(
        root,
        &["network", "create", "--subnet", "10.89.7.0/24", "outer"],
    );
    ns.ok(root, &["network", "create", "--internal", "inner"]);
    // Something to reach on the namespace's side of the outer bridge, once
    // the bridge exists (with the first container on it).
    ns.ok(
        root,
        &[
            "run",
            "-d",
            "--name",
            "peer",
            "--network",
            "inner",
            "box:1",
            "sleep",
            "60",
        ],
    );
    ns.ok(
        root,
        &[
            "run",
            "-d",
            "--name",
            "anchor",
            "--network",
            "outer",
            "box:1",
            "sleep",
            "60",
        ],
    );
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "host side\n").unwrap();
    let mut server = ns
        .sh(&format!(
            "exec busybox httpd -f -p 10.89.7.1:8000 -h {}",
            www.path().display()
        ))
        .spawn()
        .unwrap();
    ns.wait_listening(8000);
    let out = ns.ok(
        root,
        &[
            "run",
            "--rm",
            "--network",
            "outer",
            "box:1",
            "sh",
            "-c",
            "ip route; timeout 5 wget -q -O - http://10.89.7.1:8000/",
        ],
    );
    assert!(out.contains("default via 10.89.7.1 dev eth0"), "{out}");
    assert!(out.ends_with("host side\n"), "{out}");
    let out = ns.kiln(
        root,
        &[
            "run", "--rm", "--network", "inner", "box:1", "sh", "-c",
            "ip route | grep -c default; ping -c1 -W1 peer >/dev/null && echo peer answers; nslookup example.org 2>&1 | grep -o NXDOMAIN; timeout 5 wget -q -O - http://10.89.7.1:8000/",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("0\npeer answers\nNXDOMAIN\n"),
        "{stdout}"
    );
    assert!(stderr.contains("Network is unreachable"), "{stderr}");
    let _ = server.kill();
    let _ = server.wait();
    ns.ok(root, &["rm", "-f", "peer", "anchor"]);
}

/// `network connect` of a running container adds eth1 and its name on the
/// second network; `disconnect` takes both away; `--ip` is kept and a
/// taken address refused; and the errors a user meets are clear.
#[test]
fn connect_disconnect_fixed_addresses_and_errors() {
    let Some((ns, store)) = setup() else {
        return;
    };
    let root = store.path();
    ns.ok(
        root,
        &["network", "create", "--subnet", "10.89.20.0/24", "a"],
    );
    ns.ok(
        root,
        &["network", "create", "--subnet", "10.89.21.0/24", "b"],
    );
    ns.ok(
        root,
        &[
            "run",
            "-d",
            "--name",
            "c1",
            "--network",
            "a",
            "--ip",
            "10.89.20.50",
            "box:1",
            "sleep",
            "60",
        ],
    );
    assert_eq!(ip_of(&ns, root, "c1", "a"), "10.89.20.50");
    let taken = ns.kiln(
        root,
        &[
            "run",
            "--rm",
            "--network",
            "a",
            "--ip",
            "10.89.20.50",
            "box:1",
            "true",
        ],
    );
    assert_eq!(taken.status.code(), Some(125));
    assert!(
        text(&taken.stderr).contains("Address already in use: 10.89.20.50 on network a"),
        "{}",
        text(&taken.stderr)
    );
    ns.ok(root, &["network", "connect", "--alias", "svc", "b", "c1"]);
    let addrs = ns.ok(root, &["exec", "c1", "ip", "-4", "-o", "addr"]);
    assert!(addrs.contains("eth1    inet 10.89.21.2/32"), "{addrs}");
    let resolve = [
        "run",
        "--rm",
        "--network",
        "b",
        "box:1",
        "sh",
        "-c",
        "nslookup svc | grep -A1 ^Name; nslookup c1.b | grep -A1 ^Name",
    ];
    let out = ns.ok(root, &resolve);
    assert_eq!(
        out,
        "Name:\tsvc\nAddress: 10.89.21.2\nName:\tc1.b\nAddress: 10.89.21.2\n"
    );
    ns.ok(root, &["network", "disconnect", "b", "c1"]);
    let addrs = ns.ok(root, &["exec", "c1", "ip", "-4", "-o", "addr"]);
    assert!(!addrs.contains("eth1"), "{addrs}");
    let gone = ns.kiln(root, &resolve);
    assert_eq!(text(&gone.stdout), "", "its names left network b with it");
    let again = ns.kiln(root, &["network", "disconnect", "b", "c1"]);
    assert!(
        text(&again.stderr).contains("container c1 is not connected to network b"),
        "{}",
        text(&again.stderr)
    );

    for (args, message) in [
        (
            &["network", "create", "a"][..],
            "network with name a already exists",
        ),
        (
            &["network", "create", "--subnet", "10.89.20.128/25", "c"][..],
            "Pool overlaps with other one on this address space: 10.89.20.128/25 overlaps 10.89.20.0/24",
        ),
        (
            &["network", "create", "--subnet", "10.89.30.1/24", "c"][..],
            "host bits are set (the network is 10.89.30.0/24)",
        ),
        (
            &["network", "create", "host"][..],
            "\"host\" is a pre-defined network mode and cannot be created",
        ),
        (
            &["run", "--rm", "--network", "nosuch", "box:1", "true"][..],
            "network nosuch not found",
        ),
        (
            &["run", "--rm", "--network-alias", "x", "box:1", "true"][..],
            "network-scoped aliases and --ip are supported only for containers in user defined networks",
        ),
        (
            &[
                "run",
                "--rm",
                "--network",
                "a",
                "--ip",
                "10.1.2.3",
                "box:1",
                "true",
            ][..],
            "invalid address 10.1.2.3: it is not in network a's subnet 10.89.20.0/24",
        ),
        (
            &["network", "inspect", "nosuch"][..],
            "network nosuch not found",
        ),
    ] {
        let out = ns.kiln(root, args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    ns.ok(root, &["rm", "-f", "c1"]);
    assert_eq!(
        ns.ok(root, &["network", "prune"]),
        "Deleted Networks:\na\nb\n"
    );
    assert_eq!(kiln_links(&ns), Vec::<String>::new());
}

/// kill -9 of a monitor with its container on a network: the endpoint it
/// held is taken back by the next start (same address), and `rm -f`
/// removes the rest; a veth pair and a bridge left by a kiln killed in
/// the middle of set-up are removed by `network prune`, which leaves
/// links kiln did not make alone.
#[test]
fn what_a_killed_kiln_leaves_is_reclaimed() {
    let Some((ns, store)) = setup() else {
        return;
    };
    let root = store.path();
    let id = ns.ok(root, &["network", "create", "n"]);
    let id = id.trim();
    ns.ok(
        root,
        &[
            "run",
            "-d",
            "--name",
            "sleeper",
            "--network",
            "n",
            "box:1",
            "sleep",
            "60",
        ],
    );
    assert_eq!(ip_of(&ns, root, "sleeper", "n"), "10.89.0.2");
    let monitor = inspect(&ns, root, "sleeper")["State"]["Pid"]
        .as_u64()
        .unwrap();
    // The monitor is the init's parent.
    let stat = std::fs::read_to_string(format!("/proc/{monitor}/stat")).unwrap();
    let ppid: u32 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", &ppid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ns.ok(root, &["ps", "-a"]).contains("Exited (137)") {
        assert!(Instant::now() < deadline, "{}", ns.ok(root, &["ps", "-a"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_dir(root.join("networks/n/endpoints"))
            .unwrap()
            .count(),
        1,
        "the killed monitor's endpoint is still there"
    );
    ns.ok(root, &["start", "sleeper"]);
    assert_eq!(
        ip_of(&ns, root, "sleeper", "n"),
        "10.89.0.2",
        "its address was taken back"
    );
    ns.ok(root, &["rm", "-f", "sleeper"]);
    assert_eq!(
        std::fs::read_dir(root.join("networks/n/endpoints"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(kiln_links(&ns), Vec::<String>::new());

    // What a kiln killed between making a veth pair and moving its end,
    // or after making the bridge, leaves; links of another store's
    // network (another suffix) and links kiln did not make stay.
    let made = ns
        .sh(&format!(
            "ip link add kv0123456{s} type veth peer name kv0123456{s}p && \
             ip link add kb-{b} type bridge && \
             ip link add kv0123456789ab type veth peer name kv0123456789abp && \
             ip link add kb-0123456789ab type bridge && \
             ip link add kvm0 type veth peer name kvm1 && ip link add kb-other type bridge",
            s = &id[..5],
            b = &id[..12]
        ))
        .status()
        .unwrap();
    assert!(made.success());
    assert_eq!(ns.ok(root, &["network", "prune"]), "Deleted Networks:\nn\n");
    let mut left = kiln_links(&ns);
    left.sort();
    assert_eq!(
        left,
        [
            "kb-0123456789ab",
            "kb-other",
            "kv0123456789ab",
            "kv0123456789abp",
            "kvm0",
            "kvm1"
        ],
        "only what this store's networks made is removed"
    );
}

/// A UDP port: each client's datagrams reach the container's 127.0.0.1
/// (an echo server run in the container's network namespace) and the
/// answers come back to that client; `port` and `ps` say `/udp`.
#[test]
fn a_published_udp_port_carries_flows_both_ways() {
    if !need_tool(
        "nsenter",
        "util-linux nsenter runs the echo server in the container",
    ) || !need_tool("python3", "the echo server and client")
    {
        return;
    }
    let Some(store) = (if need_root("published ports need root") {
        store_with_box()
    } else {
        None
    }) else {
        return;
    };
    let root = store.path();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:53/udp");
    ok(k(
        root,
        &[],
        &[
            "run", "-d", "--name", "udp1", "-p", &publish, "box:1", "sleep", "60",
        ],
    ));
    assert_eq!(
        ok(k(root, &[], &["port", "udp1"])),
        format!("53/udp -> 127.0.0.1:{port}\n")
    );
    assert_eq!(
        ok(k(root, &[], &["port", "udp1", "53/udp"])),
        format!("127.0.0.1:{port}\n")
    );
    let ps = ok(k(root, &[], &["ps", "--format", "{{.Ports}}"]));
    assert_eq!(ps, format!("127.0.0.1:{port}->53/udp\n"));
    let v: Value = serde_json::from_str(&ok(k(
        root,
        &[],
        &["inspect", "--type", "container", "udp1"],
    )))
    .unwrap();
    let pid = v[0]["State"]["Pid"].as_u64().unwrap().to_string();
    let echo = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('127.0.0.1',53))\nprint('ready',flush=True)\nfor _ in range(4):\n    d,a=s.recvfrom(100)\n    s.sendto(b'echo:'+d,a)\n";
    let mut server = Command::new("nsenter")
        .args(["-t", &pid, "-n", "python3", "-c", echo])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "ready\n");
    let clients: Vec<std::net::UdpSocket> = (0..2)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for round in 0..2 {
        for (i, c) in clients.iter().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.send_to(format!("{i}.{round}").as_bytes(), ("127.0.0.1", port))
                .unwrap();
            let mut buf = [0u8; 100];
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], format!("echo:{i}.{round}").as_bytes());
            assert_eq!(from.port(), port);
        }
    }
    let _ = server.wait();
    ok(k(root, &[], &["rm", "-f", "udp1"]));
}

/// `--nat`: a container reaches a server in a second namespace (the
/// "outside", with no route back to the container's subnet) only when its
/// network masquerades; the rule lives in kiln's own nftables table and
/// goes with the network, and a rule of someone else's stays.
#[test]
fn nat_masquerades_only_networks_that_ask_and_cleans_up_after() {
    if !need_tool("nft", "nftables makes --nat's masquerade rule") {
        return;
    }
    let Some((ns, store)) = setup() else {
        return;
    };
    let root = store.path();
    let outside = Netns::new().unwrap();
    // A link from the test's namespace to the outside, TEST-NET-1 addresses.
    let link = format!(
        "ip link add up0 type veth peer name up1 netns {o} && ip addr add 192.0.2.1/24 dev up0 && ip link set up0 up && ip -n {o} addr add 192.0.2.2/24 dev up1 && ip -n {o} link set up1 up && nft add table ip someone && nft add chain ip someone c",
        o = outside.name
    );
    assert!(ns.sh(&link).status().unwrap().success());
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "outside\n").unwrap();
    let mut server = outside
        .sh(&format!(
            "exec busybox httpd -f -p 192.0.2.2:8000 -h {}",
            www.path().display()
        ))
        .spawn()
        .unwrap();
    outside.wait_listening(8000);
    ns.ok(
        root,
        &[
            "network",
            "create",
            "--nat",
            "--subnet",
            "10.89.40.0/24",
            "natted",
        ],
    );
    ns.ok(
        root,
        &["network", "create", "--subnet", "10.89.41.0/24", "plain"],
    );
    let fetch = |net: &str| {
        ns.kiln(
            root,
            &[
                "run",
                "--rm",
                "--network",
                net,
                "box:1",
                "sh",
                "-c",
                "timeout 3 wget -q -O - http://192.0.2.2:8000/",
            ],
        )
    };
    let out = fetch("natted");
    assert_eq!(text(&out.stdout), "outside\n", "{}", text(&out.stderr));
    let out = fetch("plain");
    assert!(
        !out.status.success(),
        "no NAT, no way back: {}",
        text(&out.stdout)
    );
    // While a container is on it, the rule is there, tagged.
    ns.ok(
        root,
        &[
            "run",
            "-d",
            "--name",
            "held",
            "--network",
            "natted",
            "box:1",
            "sleep",
            "60",
        ],
    );
    let rules = |ns: &Netns| {
        let out = ns.sh("nft list ruleset").output().unwrap();
        text(&out.stdout)
    };
    let during = rules(&ns);
    assert!(
        during.contains("ip saddr 10.89.40.0/24 oifname != \"kb-")
            && during.contains("masquerade comment \"kiln:"),
        "{during}"
    );
    ns.ok(root, &["rm", "-f", "held"]);
    ns.ok(root, &["network", "rm", "natted", "plain"]);
    let after = rules(&ns);
    assert!(!after.contains("table ip kiln"), "{after}");
    assert!(after.contains("table ip someone"), "{after}");
    let _ = server.kill();
    let _ = server.wait();
}

/// `kill -9` of a foreground `kiln run` at moments spread over its network
/// set-up (before, during and after the links, the endpoint and the
/// resolver): `rm -f` and `network prune` then leave no link, endpoint,
/// network or process behind.
#[test]
fn kiln_killed_anywhere_in_network_setup_leaves_nothing_behind() {
    let Some((ns, store)) = setup() else {
        return;
    };
    let root = store.path();
    ns.ok(root, &["network", "create", "n"]);
    for i in 0..12u64 {
        let mut child = ns
            .enter(env!("CARGO_BIN_EXE_kiln"))
            .arg("--root")
            .arg(root)
            .args(["run", "--network", "n", "box:1", "sleep", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(i * 9));
        let _ = child.kill();
        let _ = child.wait();
    }
    let ids = ns.ok(root, &["ps", "-aq"]);
    let ids: Vec<&str> = ids.lines().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(&ids);
        ns.ok(root, &args);
    }
    assert_eq!(
        std::fs::read_dir(root.join("networks/n/endpoints"))
            .unwrap()
            .count(),
        0,
        "every endpoint was taken back"
    );
    assert_eq!(ns.ok(root, &["network", "prune"]), "Deleted Networks:\nn\n");
    assert_eq!(kiln_links(&ns), Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = Command::new("ip")
            .args(["netns", "pids", &ns.name])
            .output()
            .unwrap();
        if text(&pids.stdout).trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left running: {}",
            text(&pids.stdout)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--ip-range`, `--aux-address`, an IPv6 subnet with `--ipv6`, and
/// `--link` on a user network, as docker's networks take them: addresses
/// come from the range past the reserved one, IPv6 works between
/// containers, and a link's alias resolves for the linking container only.
#[test]
fn ip_ranges_ipv6_and_links_on_a_user_network() {
    let Some((ns, store)) = setup() else {
        return;
    };
    let root = store.path();
    ns.ok(
        root,
        &[
            "network",
            "create",
            "--subnet",
            "10.89.30.0/24",
            "--ip-range",
            "10.89.30.128/25",
            "--aux-address",
            "router=10.89.30.128",
            "--subnet",
            "fd00:89:30::/64",
            "--ipv6",
            "v6net",
        ],
    );
    let net: Value = serde_json::from_str(&ns.ok(root, &["network", "inspect", "v6net"])).unwrap();
    assert_eq!(net[0]["EnableIPv6"], true);
    assert_eq!(net[0]["IPAM"]["Options"], Value::Null);
    assert_eq!(
        net[0]["IPAM"]["Config"],
        serde_json::json!([
            {"Subnet": "10.89.30.0/24", "IPRange": "10.89.30.128/25", "Gateway": "10.89.30.1",
             "AuxiliaryAddresses": {"router": "10.89.30.128"}},
            {"Subnet": "fd00:89:30::/64", "Gateway": "fd00:89:30::1"},
        ])
    );
    ns.ok(
        root,
        &[
            "run",
            "-d",
            "--name",
            "up",
            "--network",
            "v6net",
            "box:1",
            "sleep",
            "60",
        ],
    );
    // The range's first address is reserved: the next one is given.
    assert_eq!(ip_of(&ns, root, "up", "v6net"), "10.89.30.129");
    let settings = &inspect(&ns, root, "up")["NetworkSettings"]["Networks"]["v6net"];
    assert_eq!(settings["GlobalIPv6Address"], "fd00:89:30::2");
    assert_eq!(settings["IPv6Gateway"], "fd00:89:30::1");
    let addrs = ns.ok(root, &["exec", "up", "ip", "-6", "-o", "addr"]);
    assert!(addrs.contains("eth0    inet6 fd00:89:30::2/64"), "{addrs}");
    let linked = ns.ok(
        root,
        &[
            "run",
            "--rm",
            "--network",
            "v6net",
            "--link",
            "up:db",
            "box:1",
            "sh",
            "-c",
            "nslookup db | grep -A1 ^Name; ping -c1 -W10 fd00:89:30::2 | grep -c 'bytes from'",
        ],
    );
    assert!(linked.contains("Address: 10.89.30.129"), "{linked}");
    assert!(linked.trim_end().ends_with('1'), "no IPv6 answer: {linked}");
    // Without the link, `db` is no name on the network.
    let other = ns.kiln(
        root,
        &[
            "run",
            "--rm",
            "--network",
            "v6net",
            "box:1",
            "nslookup",
            "db",
        ],
    );
    assert!(
        !text(&other.stdout).contains("10.89.30.129"),
        "{}",
        text(&other.stdout)
    );
    // A link needs a user network to be resolved on.
    let refused = ns.kiln(root, &["run", "--rm", "--link", "up:db", "box:1", "true"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("--link needs a user network (--network NAME)"),
        "{}",
        text(&refused.stderr)
    );
    ns.ok(root, &["rm", "-f", "up"]);
    ns.ok(root, &["network", "rm", "v6net"]);
    assert!(kiln_links(&ns).is_empty(), "{:?}", kiln_links(&ns));
}
