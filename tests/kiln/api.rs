//! Docker's API served by `kiln system service` (issue 15), driven by the
//! real docker CLI: every command's output is checked, not only its exit
//! code.

use crate::registry::{free_port, k, ok, store_with_box};
use crate::util::{need_root, need_tool, text};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `kiln system service` on a socket in a directory of its own,
/// stopped when dropped.
struct Service {
    child: Child,
    socket: PathBuf,
    home: tempfile::TempDir,
}

impl Service {
    fn start(root: &Path, timeout: &str) -> Service {
        let home = tempfile::tempdir().unwrap();
        let socket = home.path().join("kiln.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("--root")
            .arg(root)
            .args(["system", "service", "--timeout", timeout, "--socket"])
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "the service did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Service {
            child,
            socket,
            home,
        }
    }

    /// `docker args...` against this service, with a config of its own.
    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.home.path())
            .env("HOME", self.home.path())
            .stdin(Stdio::null())
            .output()
            .expect("docker")
    }

    /// `docker args...` with `input` on its standard input.
    fn docker_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.home.path())
            .env("HOME", self.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    /// `docker args...` on a 30×100 pseudo-terminal (see [`on_a_terminal`]).
    fn docker_on_a_terminal(&self, args: &[&str], steps: &[(Option<&str>, &str)]) -> String {
        let argv: Vec<&str> = std::iter::once("docker")
            .chain(args.iter().copied())
            .collect();
        let host = format!("unix://{}", self.socket.display());
        on_a_terminal(
            &argv,
            steps,
            &[
                ("DOCKER_HOST", host.as_str()),
                ("DOCKER_CONFIG", self.home.path().to_str().unwrap()),
                ("HOME", self.home.path().to_str().unwrap()),
            ],
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

/// `argv` on a 30×100 pseudo-terminal, typing each step's text once the
/// one before it is printed: what it printed (as Python's repr) and its
/// exit line.
fn on_a_terminal(argv: &[&str], steps: &[(Option<&str>, &str)], env: &[(&str, &str)]) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg(crate::util::repo().join("fixtures/api/pty-drive.py"))
        .arg(serde_json::to_string(&argv).unwrap())
        .arg(serde_json::to_string(steps).unwrap())
        .envs(env.iter().copied())
        .output()
        .expect("pty-drive.py");
    assert!(
        out.status.success(),
        "{argv:?} on a terminal: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup() -> Option<(tempfile::TempDir, Service)> {
    if !need_root("containers need namespaces")
        || !need_tool("docker", "the docker CLI is the client under test")
    {
        return None;
    }
    let store = store_with_box()?;
    let svc = Service::start(store.path(), "0");
    Some((store, svc))
}

/// The docker CLI's walk-through through kiln: version, images, a
/// foreground run with its output and exit code, a detached web server
/// published on loopback, ps, logs with the streams apart, stop, rm,
/// volumes, inspect, tag and rmi; what kiln does not serve says so.
#[test]
fn the_docker_cli_drives_kiln() {
    let Some((store, svc)) = setup() else {
        return;
    };
    let root = store.path();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&svc.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "root:root 0660, as docker's socket");

    assert_eq!(
        svc.ok(&[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Server.Os}}"
        ]),
        "1.41 linux\n"
    );
    assert_eq!(
        svc.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "box:1\n"
    );

    // The classic builder's API: a multi-stage build from a context tar,
    // its steps streamed, its image run.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM box:1 AS base\nRUN echo built > /built\nFROM base\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\", \"/built\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.path().join("hello.txt"), "from the context\n").unwrap();
    let built = Command::new("docker")
        .args(["build", "-t", "apibuilt:1"])
        .arg(ctx.path())
        .env("DOCKER_HOST", format!("unix://{}", svc.socket.display()))
        .env("DOCKER_CONFIG", svc.home.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    let log = text(&built.stdout);
    assert!(built.status.success(), "{log}{}", text(&built.stderr));
    assert!(
        log.contains("RUN echo built > /built") && log.contains("Successfully tagged apibuilt:1"),
        "{log}"
    );
    assert_eq!(
        svc.ok(&["run", "--rm", "apibuilt:1"]),
        "from the context\nbuilt\n"
    );
    svc.ok(&["rmi", "apibuilt:1"]);

    // Foreground: attach, wait for the removal, start; streams apart.
    let out = svc.docker(&[
        "run",
        "--rm",
        "box:1",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    assert_eq!(svc.ok(&["ps", "-aq"]), "", "--rm removed it");

    // Detached, published on loopback.
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "through the API\n").unwrap();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let vol = format!("{}:/www:ro", www.path().display());
    let id = svc.ok(&[
        "run", "-d", "--name", "web", "-p", &publish, "-v", &vol, "box:1", "httpd", "-f", "-p",
        "80", "-h", "/www",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let got = Command::new("busybox")
            .args([
                "wget",
                "-q",
                "-O",
                "-",
                &format!("http://127.0.0.1:{port}/"),
            ])
            .output()
            .unwrap();
        if got.status.success() {
            break text(&got.stdout);
        }
        assert!(Instant::now() < deadline, "the server never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(body, "through the API\n");
    assert_eq!(
        svc.ok(&["ps", "--format", "{{.Names}} {{.Ports}} {{.Status}}"])
            .split(" Up ")
            .next()
            .unwrap(),
        format!("web 127.0.0.1:{port}->80/tcp")
    );
    // kiln's own CLI sees the same container.
    assert!(ok(k(root, &[], &["ps", "--format", "{{.Names}}"])).contains("web"));

    svc.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "box:1",
        "sh",
        "-c",
        "echo hello; echo oops >&2; echo made > /made; exec sleep 60",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = svc.docker(&["logs", "talker"]);
        if text(&logs.stdout) == "hello\n" && text(&logs.stderr) == "oops\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "logs: {:?} {:?}",
            text(&logs.stdout),
            text(&logs.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let inspect = svc.ok(&[
        "inspect",
        "--format",
        "{{.State.Running}} {{.Name}} {{.Config.Image}}",
        "talker",
    ]);
    assert_eq!(inspect, "true /talker box:1\n");

    // exec: its streams apart and its exit code; a missing command 126,
    // dockerd's code for an exec that could not start (run's is 127).
    let out = svc.docker(&["exec", "talker", "sh", "-c", "echo in; echo e >&2; exit 5"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout), text(&out.stderr)),
        (Some(5), "in\n".to_string(), "e\n".to_string())
    );
    let missing = svc.docker(&["exec", "talker", "nosuchcmd"]);
    assert_eq!(
        missing.status.code(),
        Some(126),
        "{}",
        text(&missing.stderr)
    );

    // Not served: said, never a silent success.
    // stats: one sample (kiln's init and sleep are its processes).
    assert_eq!(
        svc.ok(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.PIDs}}",
            "talker"
        ]),
        "talker 2\n"
    );
    // top lists its processes; commit makes an image of its changes.
    let top = svc.ok(&["top", "talker"]);
    assert!(top.starts_with("UID") && top.contains("sleep 60"), "{top}");
    let committed = svc.ok(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/made\"]",
        "talker",
        "committed:1",
    ]);
    assert!(committed.starts_with("sha256:"), "{committed}");
    assert_eq!(svc.ok(&["run", "--rm", "committed:1"]), "made\n");
    svc.ok(&["rmi", "committed:1"]);

    let export = svc.docker(&["export", "talker"]);
    assert!(!export.status.success());
    assert!(
        text(&export.stderr).contains("kiln does not implement GET /containers/talker/export"),
        "{}",
        text(&export.stderr)
    );
    // Outside a swarm, as dockerd says it (clients' cleanup expects 503).
    let services = svc.docker(&["service", "ls"]);
    assert!(!services.status.success());
    assert!(
        text(&services.stderr).contains("This node is not a swarm manager."),
        "{}",
        text(&services.stderr)
    );

    assert_eq!(
        svc.ok(&["stop", "-t", "1", "web", "talker"]),
        "web\ntalker\n"
    );
    let ps = svc.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps.contains("web Exited (143)") && ps.contains("talker Exited (143)"),
        "{ps}"
    );
    assert_eq!(svc.ok(&["rm", "web", "talker"]), "web\ntalker\n");
    let gone = svc.docker(&["rm", "web"]);
    assert!(
        text(&gone.stderr).contains("No such container: web"),
        "{}",
        text(&gone.stderr)
    );

    // A named volume outlives the container that wrote to it.
    assert_eq!(svc.ok(&["volume", "create", "api-data"]), "api-data\n");
    svc.ok(&[
        "run",
        "--rm",
        "-v",
        "api-data:/data",
        "box:1",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(
        svc.ok(&[
            "run",
            "--rm",
            "-v",
            "api-data:/data:ro",
            "box:1",
            "cat",
            "/data/f"
        ]),
        "kept\n"
    );
    assert_eq!(svc.ok(&["volume", "ls", "-q"]), "api-data\n");
    assert_eq!(
        svc.ok(&["volume", "ls", "-q", "--filter", "name=other"]),
        ""
    );
    assert_eq!(svc.ok(&["volume", "rm", "api-data"]), "api-data\n");

    // A rebuild leaves its first image without a name; prune takes it,
    // and with -a every image no container uses.
    std::fs::write(ctx.path().join("hello.txt"), "changed\n").unwrap();
    let rebuilt = Command::new("docker")
        .args(["build", "-q", "-t", "multi:1"])
        .arg(ctx.path())
        .env("DOCKER_HOST", format!("unix://{}", svc.socket.display()))
        .env("DOCKER_CONFIG", svc.home.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    let rebuilt = text(&rebuilt.stdout);
    assert!(
        rebuilt.starts_with("sha256:") && rebuilt.lines().count() == 1,
        "{rebuilt}"
    );
    let pruned = svc.ok(&["image", "prune", "-f"]);
    assert!(
        pruned.starts_with("Deleted Images:\ndeleted: sha256:"),
        "{pruned}"
    );
    assert_eq!(
        svc.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "box:1\nmulti:1\n"
    );
    svc.ok(&["run", "-d", "--name", "holder", "box:1", "sleep", "60"]);
    let pruned = svc.ok(&["image", "prune", "-a", "-f"]);
    assert!(pruned.contains("untagged: multi:1\n"), "{pruned}");
    assert!(!pruned.contains("box:1"), "{pruned}");
    assert_eq!(
        svc.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "box:1\n"
    );
    svc.ok(&["rm", "-f", "holder"]);

    let kiln_id: serde_json::Value =
        serde_json::from_str(&ok(k(root, &[], &["inspect", "box:1"]))).unwrap();
    assert_eq!(
        svc.ok(&["image", "inspect", "--format", "{{.Id}}", "box:1"])
            .trim(),
        kiln_id[0]["Id"].as_str().unwrap()
    );
    svc.ok(&["tag", "box:1", "box:2"]);
    assert_eq!(
        svc.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "box:1\nbox:2\n"
    );
    assert!(svc.ok(&["rmi", "box:2"]).starts_with("Untagged: box:2\n"));
    let nets = svc.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert_eq!(nets, "host host\nnone null\n");

    // save, rmi, load: the same image back under its name.
    let tar = svc.home.path().join("box.tar");
    svc.ok(&["save", "-o", tar.to_str().unwrap(), "box:1"]);
    assert!(std::fs::metadata(&tar).unwrap().len() > 1_000_000);
    svc.ok(&["rmi", "box:1"]);
    assert_eq!(svc.ok(&["images", "-q"]), "");
    assert_eq!(
        svc.ok(&["load", "-i", tar.to_str().unwrap()]),
        "Loaded image: box:1\n"
    );
    assert_eq!(
        svc.ok(&["image", "inspect", "--format", "{{.Id}}", "box:1"])
            .trim(),
        kiln_id[0]["Id"].as_str().unwrap()
    );
    // And through a pipe, as `docker save | docker load` is written.
    svc.ok(&["tag", "box:1", "piped:1"]);
    let piped = Command::new("sh")
        .args(["-c", "docker save piped:1 | docker load"])
        .env("DOCKER_HOST", format!("unix://{}", svc.socket.display()))
        .env("DOCKER_CONFIG", svc.home.path())
        .output()
        .unwrap();
    assert_eq!(
        (text(&piped.stdout), piped.status.success()),
        ("Loaded image: piped:1\n".into(), true),
        "{}",
        text(&piped.stderr)
    );
}

/// Standard input and terminals through the API: `docker run -i` with
/// piped input (closed at its end: StdinOnce), `docker run -it` and
/// `docker exec -it` on a terminal (the pty's size is the client's),
/// `docker exec -i`, and `docker attach` to a detached `-dit` shell, left
/// with ctrl-p ctrl-q while the shell runs on.
#[test]
fn the_docker_cli_runs_interactively_through_kiln() {
    let Some((store, svc)) = setup() else {
        return;
    };
    let out = svc.docker_with_input(
        &[
            "run",
            "-i",
            "--rm",
            "box:1",
            "sh",
            "-c",
            "cat; echo done >&2; exit 3",
        ],
        b"hello there\n",
    );
    assert_eq!(
        (text(&out.stdout), text(&out.stderr), out.status.code()),
        ("hello there\n".into(), "done\n".into(), Some(3))
    );
    // Piped bytes pass as they are: ctrl-p ctrl-q detach only a terminal.
    let out = svc.docker_with_input(
        &["run", "-i", "--rm", "box:1", "od", "-An", "-tx1"],
        b"a\x10\x11b\x10",
    );
    assert_eq!(text(&out.stdout).trim(), "61 10 11 62 10");
    // Without -i, standard input is closed: cat ends at once.
    let out = svc.docker_with_input(&["run", "--rm", "box:1", "cat"], b"not read\n");
    assert_eq!(
        (text(&out.stdout), out.status.code()),
        (String::new(), Some(0))
    );

    let shown = svc.docker_on_a_terminal(
        &["run", "-it", "--rm", "box:1", "sh"],
        &[
            (Some("# "), "stty size; tty; echo $((6*7))\r"),
            (Some("42"), "exit 3\r"),
        ],
    );
    assert!(shown.contains(r"30 100\r\n/dev/pts/0\r\n42\r\n"), "{shown}");
    assert!(shown.ends_with("exit 3\n"), "{shown}");

    let id = svc.ok(&["run", "-dit", "--name", "shell", "box:1", "sh"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let v: serde_json::Value = serde_json::from_str(&svc.ok(&["inspect", "shell"])).unwrap();
    assert_eq!(
        (
            &v[0]["Config"]["Tty"],
            &v[0]["Config"]["OpenStdin"],
            &v[0]["Config"]["StdinOnce"]
        ),
        (
            &serde_json::json!(true),
            &serde_json::json!(true),
            &serde_json::json!(false)
        )
    );
    // A detached exec's output goes nowhere, and it runs to its end.
    svc.ok(&[
        "exec",
        "-d",
        "shell",
        "sh",
        "-c",
        "echo up; echo more >&2; touch /ready",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !svc
        .docker(&["exec", "shell", "test", "-e", "/ready"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the detached exec did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = svc.docker_with_input(
        &["exec", "-i", "shell", "sh", "-c", "cat; exit 4"],
        b"piped\n",
    );
    assert_eq!(
        (text(&out.stdout), out.status.code()),
        ("piped\n".into(), Some(4))
    );
    let shown = svc.docker_on_a_terminal(
        &["exec", "-it", "shell", "sh"],
        &[
            (Some("# "), "stty size; tty\r"),
            (Some("/dev/pts/"), "exit 5\r"),
        ],
    );
    assert!(shown.contains(r"30 100\r\n/dev/pts/1\r\n"), "{shown}");
    assert!(shown.ends_with("exit 5\n"), "{shown}");
    // Attached to the shell the container runs: typed lines reach it, its
    // answers come back, and ctrl-p ctrl-q leaves it running.
    let shown = svc.docker_on_a_terminal(
        &["attach", "shell"],
        &[
            (None, "echo attached-$((1+1))\r"),
            (Some("attached-2"), "\u{10}\u{11}"),
        ],
    );
    assert!(shown.contains(r"attached-2\r\n"), "{shown}");
    assert_eq!(
        svc.ok(&["ps", "--format", "{{.Names}} {{.Status}}"])
            .split(' ')
            .next(),
        Some("shell")
    );
    assert!(svc.ok(&["logs", "shell"]).contains("attached-2"));
    // kiln's own attach: the same shell, its window's size given to it.
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let root = store.path().to_str().unwrap();
    let shown = on_a_terminal(
        &[kiln, "--root", root, "attach", "shell"],
        &[
            (None, "stty size; echo kiln-$((2+3))\r"),
            (Some("kiln-5"), "\u{10}\u{11}"),
        ],
        &[],
    );
    assert!(shown.contains(r"30 100\r\nkiln-5\r\n"), "{shown}");
    assert!(shown.ends_with("exit 0\n"), "{shown}");
    // Its exit ends an attach with its code.
    let shown = on_a_terminal(
        &[kiln, "--root", root, "attach", "shell"],
        &[(None, "exit 4\r")],
        &[],
    );
    assert!(shown.ends_with("exit 4\n"), "{shown}");
    let out = k(store.path(), &[], &["attach", "shell"]);
    assert_eq!(
        (out.status.code(), text(&out.stderr)),
        (
            Some(1),
            "error: You cannot attach to a stopped container, start it first\n".into()
        )
    );
    svc.ok(&["rm", "-f", "shell"]);
}

/// `docker events` through kiln: what the CLI, the API and kiln's own
/// commands did, in order, with docker's attributes; filtered; and
/// followed as it happens.
#[test]
fn docker_events_tell_what_happened() {
    let Some((store, svc)) = setup() else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    // Followed from `since` (replayed, then followed: no race with the
    // subscription): the start of a container made later arrives.
    let mut follower = Command::new("docker")
        .args([
            "events",
            "--since",
            &since,
            "--filter",
            "event=start",
            "--format",
            "{{.Actor.Attributes.name}}",
        ])
        .env("DOCKER_HOST", format!("unix://{}", svc.socket.display()))
        .env("DOCKER_CONFIG", svc.home.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = svc.docker(&["run", "--name", "once", "box:1", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    svc.ok(&["tag", "box:1", "box:other"]);
    svc.ok(&["rmi", "box:other"]);
    svc.ok(&["volume", "create", "vol1"]);
    svc.ok(&["rm", "once"]);
    // A forced removal kills the monitor that would have told of the end:
    // the kill and the death are told all the same.
    svc.ok(&["run", "-d", "--name", "bg", "box:1", "sleep", "60"]);
    svc.ok(&["rm", "-f", "bg"]);
    // kiln's own commands are in the same journal: there is no daemon.
    ok(k(store.path(), &[], &["volume", "rm", "vol1"]));
    // Read on a thread, waited for with a deadline: a missing event fails
    // the test instead of blocking it for ever.
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    let first = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(first, "once\n");
    // The CLI sends `--until 0s` as whole seconds: the events of this
    // second would be after it.
    std::thread::sleep(Duration::from_millis(1100));

    let seen = svc.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
    ]);
    assert_eq!(
        seen.lines().map(str::trim_end).collect::<Vec<_>>(),
        [
            "container create once <no value>",
            "container start once <no value>",
            "container die once 7",
            "image tag box:other <no value>",
            "image untag box:other <no value>",
            "volume create <no value> <no value>",
            "container destroy once <no value>",
            "container create bg <no value>",
            "container start bg <no value>",
            "container kill bg <no value>",
            "container die bg 137",
            "container destroy bg <no value>",
            "volume destroy <no value> <no value>",
        ]
    );
    let dies = svc.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--filter",
        "container=once",
        "--filter",
        "event=die",
        "--format",
        "{{.ID}}",
    ]);
    assert_eq!(dies.lines().count(), 1, "{dies}");
    let images = svc.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--filter",
        "type=image",
        "--format",
        "{{json .}}",
    ]);
    let v: serde_json::Value = serde_json::from_str(images.lines().next().unwrap()).unwrap();
    let id = svc.ok(&["image", "inspect", "--format", "{{.Id}}", "box:1"]);
    assert_eq!(v["Actor"]["ID"].as_str(), Some(id.trim()));
    assert_eq!(v["status"], "tag");
    // A bad filter is refused with docker's words.
    let out = svc.docker(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--filter",
        "colour=red",
    ]);
    assert!(
        text(&out.stderr).contains("invalid filter 'colour'"),
        "{}",
        text(&out.stderr)
    );
}

/// A TCP listener beyond loopback needs TLS with client certificates
/// (dockerd's `--tlsverify`): refused without it; with it, the docker CLI
/// holding a certificate the CA signed is served, one without a
/// certificate or with another CA's is not.
#[test]
fn tcp_beyond_loopback_needs_client_certificates() {
    if !need_tool("openssl", "openssl makes the test's certificates")
        || !need_tool("docker", "the docker CLI is the client under test")
    {
        return;
    }
    let Some(store) = store_with_box() else {
        return;
    };
    let out = k(
        store.path(),
        &[],
        &[
            "system",
            "service",
            "--listen",
            "0.0.0.0:2376",
            "--timeout",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("beyond loopback the API is served only with --tlsverify"),
        "{}",
        text(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sh = |script: &str| {
        let out = Command::new("sh")
            .args(["-ec", script])
            .current_dir(d)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    };
    let ca = |name: &str| {
        format!(
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout {name}-key.pem -out {name}.pem -days 1 -subj /CN={name} 2>/dev/null"
        )
    };
    let signed = |name: &str, ca: &str, ext: &str| {
        format!(
            "openssl req -newkey rsa:2048 -nodes -keyout {name}-key.pem -out {name}.csr -subj /CN={name} 2>/dev/null\n\
             printf '{ext}\\n' > {name}.ext\n\
             openssl x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}-key.pem -CAcreateserial -out {name}-cert.pem -days 1 -extfile {name}.ext 2>/dev/null"
        )
    };
    sh(&ca("ca"));
    sh(&ca("otherca"));
    sh(&signed("server", "ca", "subjectAltName=IP:127.0.0.1"));
    sh(&signed("client", "ca", "extendedKeyUsage=clientAuth"));
    sh(&signed(
        "stranger",
        "otherca",
        "extendedKeyUsage=clientAuth",
    ));

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(store.path())
        .args([
            "system",
            "service",
            "--timeout",
            "0",
            "--listen",
            &addr,
            "--tlsverify",
        ])
        .arg("--tlscacert")
        .arg(d.join("ca.pem"))
        .arg("--tlscert")
        .arg(d.join("server-cert.pem"))
        .arg("--tlskey")
        .arg(d.join("server-key.pem"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the service did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let docker = |who: Option<&str>| {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", d)
            .env("HOME", d)
            .env_remove("DOCKER_HOST");
        cmd.args(["-H", &format!("tcp://{addr}"), "--tlscacert"])
            .arg(d.join("ca.pem"));
        match who {
            Some(name) => {
                cmd.arg("--tlsverify")
                    .arg("--tlscert")
                    .arg(d.join(format!("{name}-cert.pem")))
                    .arg("--tlskey")
                    .arg(d.join(format!("{name}-key.pem")));
            }
            None => {
                cmd.arg("--tlsverify");
            }
        }
        cmd.args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
            .unwrap()
    };
    let served = docker(Some("client"));
    assert!(served.status.success(), "{}", text(&served.stderr));
    assert_eq!(text(&served.stdout), "box:1\n");
    for who in [None, Some("stranger")] {
        let refused = docker(who);
        assert!(!refused.status.success(), "{who:?} was served");
        // Refused in the handshake (Go sends no certificate another CA
        // signed: the service asks for one of its CA's).
        assert!(
            text(&refused.stderr).contains("remote error: tls: certificate required"),
            "{who:?}: {}",
            text(&refused.stderr)
        );
        assert_eq!(text(&refused.stdout), "", "{who:?}");
    }
    // A client that presents another CA's certificate anyway (Python's
    // ssl does) is refused by the service's verification, not served.
    let script = r#"
import socket, ssl, sys
d, port, who = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=d + "/ca.pem")
ctx.load_cert_chain(d + "/" + who + "-cert.pem", d + "/" + who + "-key.pem")
try:
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
    s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
    print(s.recv(1000).split(b"\r\n")[0].decode())
except (ssl.SSLError, ConnectionResetError) as e:
    print("refused:", type(e).__name__)
"#;
    let ping = |who: &str| {
        let out = Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(d)
            .arg(port.to_string())
            .arg(who)
            .output()
            .unwrap();
        text(&out.stdout)
    };
    assert_eq!(ping("client"), "HTTP/1.0 200 OK\n");
    assert!(
        ping("stranger").starts_with("refused: "),
        "{}",
        ping("stranger")
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `--timeout`: the service ends once nothing has asked for that long,
/// and takes its socket with it.
#[test]
fn the_service_ends_when_idle() {
    let Some((store, _svc)) = setup() else {
        return;
    };
    let mut idle = Service::start(store.path(), "1");
    assert_eq!(
        idle.ok(&["version", "--format", "{{.Server.APIVersion}}"]),
        "1.41\n"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = idle.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still serving after 10 s idle");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    assert!(!idle.socket.exists(), "the socket is removed");
}

/// docker-py (Debian's python3-docker) through kiln: `containers.run` in
/// the foreground (its output), detached with streamed logs, reload,
/// stop, wait, remove.
#[test]
fn docker_py_drives_kiln() {
    let Some((_store, svc)) = setup() else {
        return;
    };
    let has_docker_py = Command::new("/usr/bin/python3")
        .args(["-c", "import docker"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_docker_py {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3-docker missing in CI: .ci/run must install it"
        );
        eprintln!("skipped: Debian's python3-docker is not installed");
        return;
    }
    let script = r#"
import docker, io, itertools, sys
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
print(c.version()["ApiVersion"])
print(c.containers.run("box:1", ["sh", "-c", "echo hi; echo there"], remove=True))
ctr = c.containers.run("box:1", ["sh", "-c", "echo one; sleep 0.3; echo two; exec sleep 30"], detach=True, name="py1")
print(ctr.status)
for line in itertools.islice(ctr.logs(stream=True, follow=True), 2):
    print(line)
ctr.reload()
print(ctr.status, ctr.name)
print(ctr.exec_run(["sh", "-c", "echo in; exit 2"]))
stats = ctr.stats(stream=True, decode=True)
a, b = next(stats), next(stats)
print(b["precpu_stats"]["cpu_usage"]["total_usage"] == a["cpu_stats"]["cpu_usage"]["total_usage"], b["pids_stats"]["current"])
ctr.stop(timeout=1)
print(ctr.wait()["StatusCode"])
ctr.remove()
print([x.name for x in c.containers.list(all=True)])
# Built from a Dockerfile alone (docker-py sends it as the context).
df = io.BytesIO(b"FROM box:1\nRUN echo py > /py\nLABEL made=by-py\nCMD [\"cat\", \"/py\"]\n")
img, logs = c.images.build(fileobj=df, tag="pybuilt:1", rm=True)
print(img.tags, img.labels["made"], any("RUN echo py" in l.get("stream", "") for l in logs))
# kiln's build report, in the stream before the image's ID.
reports = [l["aux"]["kiln.build.report"] for l in logs if "kiln.build.report" in l.get("aux", {})]
print(len(reports), reports[0]["run"], reports[0]["cached"], [s["outcome"] for s in reports[0]["steps"]][-1])
print(c.containers.run("pybuilt:1", remove=True))
vol = c.volumes.create("pyvol")
c.containers.run("box:1", ["sh", "-c", "echo in-volume > /v/f"], volumes={"pyvol": {"bind": "/v", "mode": "rw"}}, remove=True)
print(c.containers.run("box:1", ["cat", "/v/f"], volumes=["pyvol:/v:ro"], remove=True))
vol.remove()
img.tag("pybuilt", "2")
print(sorted(t for i in c.images.list() for t in i.tags))
c.images.remove("pybuilt:2")
c.images.remove("pybuilt:1")
print(sorted(t for i in c.images.list() for t in i.tags))
# One image saved by its name (GET /images/NAME/get): a tar archive.
tar = b"".join(c.images.get("box:1").save())
print(len(tar) > 1000000, tar[257:262] == b"ustar")
# A root filesystem imported from the request's body, with a change.
import tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    info = tarfile.TarInfo("hello.txt")
    info.size = 9
    t.addfile(info, io.BytesIO(b"imported\n"))
r = c.api.import_image_from_data(buf.getvalue(), repository="imp", tag="1", changes=["LABEL src=py"])
imp = c.images.get("imp:1")
print(imp.labels, imp.id in r)
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(&svc.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "1.41\nb'hi\\nthere\\n'\ncreated\nb'one\\n'\nb'two\\n'\nrunning py1\nExecResult(exit_code=2, output=b'in\\n')\nTrue 2\n143\n[]\n\
         ['pybuilt:1'] by-py True\n1 1 0 run\nb'py\\n'\nb'in-volume\\n'\n['box:1', 'pybuilt:1', 'pybuilt:2']\n['box:1']\nTrue True\n{'src': 'py'} True\n"
    );
}

/// `docker push` and `docker pull` through kiln, against a real
/// docker-registry on 127.0.0.1: a tag pushed, removed, pulled back and
/// run.
#[test]
fn docker_push_and_pull_through_kiln() {
    let Some((_store, svc)) = setup() else {
        return;
    };
    let Some(reg) = crate::registry::Registry::start(false) else {
        return;
    };
    let target = format!("{}/api/box:1", reg.host());
    svc.ok(&["tag", "box:1", &target]);
    let pushed = svc.ok(&["push", &target]);
    assert!(
        pushed.starts_with(&format!(
            "The push refers to repository [{}/api/box]\n",
            reg.host()
        )),
        "{pushed}"
    );
    // Each blob's progress, as docker's push shows it.
    assert!(
        pushed.lines().filter(|l| l.ends_with(": Pushed")).count() >= 2,
        "{pushed}"
    );
    assert!(pushed.contains("1: digest: sha256:"), "{pushed}");
    assert!(
        svc.ok(&["rmi", &target])
            .contains(&format!("Untagged: {target}"))
    );
    // Nothing of it left: the pull downloads every blob.
    svc.ok(&["rmi", "box:1"]);
    svc.ok(&["image", "prune", "-f"]);
    let pulled = svc.ok(&["pull", &target]);
    assert!(pulled.starts_with("1: Pulling from api/box\n"), "{pulled}");
    assert!(
        pulled
            .lines()
            .filter(|l| l.ends_with(": Pull complete"))
            .count()
            >= 1,
        "{pulled}"
    );
    assert!(
        pulled.contains(&format!("Status: Downloaded newer image for {target}")),
        "{pulled}"
    );
    assert_eq!(
        svc.ok(&["run", "--rm", &target, "echo", "pulled"]),
        "pulled\n"
    );
    let missing = svc.docker(&["pull", &format!("{}/api/nosuch:1", reg.host())]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("api/nosuch has no manifest 1 there"),
        "{}",
        text(&missing.stderr)
    );
}

/// The seeds' compose scene through kiln (Debian's docker-compose 1.29):
/// a web server built from a Dockerfile (`build:`, through `/build`) and a
/// client that calls it by its service name on the project's network;
/// `up -d`, `ps`, `logs`, `down`. Then the docker CLI's own networks: two
/// containers on a `network create`d network, one calling the other by
/// name. The service runs in a network namespace the test makes, where
/// the bridges live.
#[test]
fn docker_compose_brings_an_application_up_and_down() {
    if !need_root("containers need namespaces")
        || !need_tool(
            "docker-compose",
            "Debian's docker-compose is the client under test",
        )
    {
        return;
    }
    let Some(ns) = crate::networks::Netns::new() else {
        return;
    };
    let Some(store) = store_with_box() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("app");
    let web = project.join("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("index.html"), "served to compose\n").unwrap();
    std::fs::write(
        web.join("Dockerfile"),
        "FROM box:1\nCOPY index.html /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n",
    )
    .unwrap();
    std::fs::write(
        project.join("docker-compose.yml"),
        "version: \"3\"\nservices:\n  web:\n    build: ./web\n  client:\n    image: box:1\n    command: [\"sh\", \"-c\", \"i=0; until wget -q -O - http://web/; do i=$$((i+1)); [ $$i -gt 150 ] && exit 1; sleep 0.2; done\"]\n    depends_on: [web]\n",
    )
    .unwrap();
    let socket = dir.path().join("kiln.sock");
    let mut service = ns
        .enter(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(store.path())
        .args(["system", "service", "--timeout", "0", "--socket"])
        .arg(&socket)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the service did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let compose = |args: &[&str]| {
        Command::new("docker-compose")
            .args(args)
            .current_dir(&project)
            .env("DOCKER_HOST", format!("unix://{}", socket.display()))
            .env("HOME", dir.path())
            // docker-py's build (the API's /build), not the docker CLI's.
            .env("COMPOSE_DOCKER_CLI_BUILD", "0")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let up = compose(&["up", "-d"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    assert!(
        text(&up.stderr).contains("Building web"),
        "{}",
        text(&up.stderr)
    );
    assert!(
        text(&up.stderr).contains("Creating app_client_1"),
        "{}",
        text(&up.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let logs = loop {
        let out = compose(&["logs", "--no-color", "client"]);
        let t = text(&out.stdout);
        if t.contains("served to compose") {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the client never got an answer: {t}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(logs.contains("client_1  | served to compose"), "{logs}");
    // The client exits once it has its answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = text(&compose(&["ps"]).stdout);
        let rows: Vec<&str> = ps.lines().filter(|l| l.starts_with("app_")).collect();
        assert_eq!(rows.len(), 2, "{ps}");
        let client_done = rows
            .iter()
            .any(|r| r.starts_with("app_client_1") && r.contains("Exit 0"));
        let web_up = rows
            .iter()
            .any(|r| r.starts_with("app_web_1") && r.contains(" Up"));
        if client_done && web_up {
            break;
        }
        assert!(Instant::now() < deadline, "{ps}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let down = compose(&["down"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(
        text(&down.stderr).contains("Removing network app_default"),
        "{}",
        text(&down.stderr)
    );
    assert!(
        !ns.links()
            .iter()
            .any(|l| l.starts_with("kb-") || l.starts_with("kv")),
        "down leaves no link: {:?}",
        ns.links()
    );

    // The docker CLI's networks: a server and a client on a network of
    // their own, the client calling the server by its name.
    let docker = |args: &[&str]| {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", socket.display()))
            .env("DOCKER_CONFIG", dir.path())
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    docker(&["network", "create", "appnet"]);
    docker(&[
        "run",
        "-d",
        "--network",
        "appnet",
        "--name",
        "srv",
        "app_web",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let got = docker(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "box:1",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://srv/ && exit; sleep 0.2; done; exit 1",
    ]);
    assert_eq!(got, "served to compose\n");
    docker(&["rm", "-f", "srv"]);
    docker(&["network", "rm", "appnet"]);
    assert_eq!(
        docker(&["network", "ls", "--filter", "name=appnet", "-q"]),
        ""
    );
    let _ = service.kill();
    let _ = service.wait();
}

/// One HTTP/1.0 request on a unix socket with a JSON body: the status,
/// the raw headers and the body.
fn http(socket: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String, String) {
    request(
        socket,
        method,
        path,
        "application/json",
        body.unwrap_or("").as_bytes(),
    )
}

/// A POST of raw bytes (a tar) on a unix socket.
fn post_bytes(socket: &Path, path: &str, body: &[u8]) -> (u16, String, String) {
    request(socket, "POST", path, "application/x-tar", body)
}

fn request(
    socket: &Path,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: docker\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), rest.to_string())
}

/// The JSON type of the value at `path` (`a.b.c`), or None when missing.
fn kind_at(v: &serde_json::Value, path: &str) -> Option<&'static str> {
    let mut cur = v;
    for part in path.split('.') {
        cur = match part.parse::<usize>() {
            Ok(i) => cur.get(i)?,
            Err(_) => cur.get(part)?,
        };
    }
    Some(match cur {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    })
}

/// The same requests to docker 20.10's own daemon and to kiln: the keys
/// clients read are there in both, with the same JSON types.
#[test]
fn the_api_answers_in_dockerds_shapes() {
    let dockerd = Path::new("/var/run/docker.sock");
    if !need_root("containers need namespaces") || !need_tool("docker", "dockerd is the reference")
    {
        return;
    }
    if std::os::unix::net::UnixStream::connect(dockerd).is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "dockerd is not running in CI"
        );
        eprintln!("skipped: dockerd is not running");
        return;
    }
    let Some((store, svc)) = setup() else {
        return;
    };
    // The same image in both: kiln's box, loaded into dockerd.
    // A name no other test gives dockerd.
    let name = "kiln-api-conformance/box:1";
    ok(k(store.path(), &[], &["tag", "box:1", name]));
    let tar = store.path().join("box-docker.tar");
    ok(k(
        store.path(),
        &[],
        &[
            "save",
            name,
            "-o",
            tar.to_str().unwrap(),
            "--format",
            "docker",
        ],
    ));
    let loaded = Command::new("docker")
        .args(["load", "-i"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{}", text(&loaded.stderr));
    let create = r#"{"Image":"kiln-api-conformance/box:1","Cmd":["true"],"Labels":{"kiln-api-conformance":"1"},"HostConfig":{"NetworkMode":"none"}}"#;
    let mut made = Vec::new();
    for sock in [dockerd, svc.socket.as_path()] {
        let (status, _, body) = http(sock, "POST", "/v1.41/containers/create", Some(create));
        assert_eq!(status, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        made.push(v["Id"].as_str().unwrap().to_string());
    }
    let checks: &[(&str, &[&str])] = &[
        (
            "/v1.41/version",
            &[
                "Version",
                "ApiVersion",
                "MinAPIVersion",
                "Os",
                "Arch",
                "KernelVersion",
                "Components",
            ],
        ),
        (
            "/v1.41/info",
            &[
                "ID",
                "Containers",
                "ContainersRunning",
                "ContainersStopped",
                "Images",
                "Driver",
                "Name",
                "ServerVersion",
                "OperatingSystem",
                "OSType",
                "Architecture",
                "NCPU",
                "MemTotal",
                "DockerRootDir",
                "Plugins",
                "Swarm",
            ],
        ),
        (
            "/v1.41/images/json",
            &[
                "0.Id",
                "0.RepoTags",
                "0.RepoDigests",
                "0.Created",
                "0.Size",
                "0.Labels",
            ],
        ),
        (
            "/v1.41/containers/json?all=1&filters=%7B%22label%22%3A%5B%22kiln-api-conformance%3D1%22%5D%7D",
            &[
                "0.Id",
                "0.Names",
                "0.Image",
                "0.ImageID",
                "0.Command",
                "0.Created",
                "0.Ports",
                "0.Labels",
                "0.State",
                "0.Status",
                "0.HostConfig.NetworkMode",
                "0.NetworkSettings.Networks",
                "0.Mounts",
            ],
        ),
        (
            "/v1.41/containers/ID/json",
            &[
                "Id",
                "Created",
                "Path",
                "Args",
                "State.Status",
                "State.Running",
                "State.ExitCode",
                "State.Pid",
                "State.StartedAt",
                "State.FinishedAt",
                "Image",
                "Name",
                "RestartCount",
                "HostConfig.NetworkMode",
                "HostConfig.AutoRemove",
                "HostConfig.RestartPolicy.Name",
                "HostConfig.LogConfig.Type",
                "Config.Hostname",
                "Config.Env",
                "Config.Cmd",
                "Config.Image",
                "Config.WorkingDir",
                "Config.Labels",
                "Config.Tty",
                "NetworkSettings.Networks",
                "Mounts",
            ],
        ),
        ("/v1.41/volumes", &["Volumes", "Warnings"]),
        (
            "/v1.41/networks",
            &[
                "0.Name",
                "0.Id",
                "0.Driver",
                "0.Scope",
                "0.IPAM",
                "0.Containers",
            ],
        ),
    ];
    let mut differences = Vec::new();
    for (path, keys) in checks {
        let mut answers = Vec::new();
        for (sock, id) in [(dockerd, &made[0]), (svc.socket.as_path(), &made[1])] {
            let (status, _, body) = http(sock, "GET", &path.replace("ID", id), None);
            assert_eq!(status, 200, "{path}: {body}");
            answers.push(serde_json::from_str::<serde_json::Value>(&body).unwrap());
        }
        for key in *keys {
            let theirs = kind_at(&answers[0], key);
            let ours = kind_at(&answers[1], key);
            assert!(
                theirs.is_some(),
                "dockerd has no {key} in {path}: the list is wrong"
            );
            // An empty list or object docker sends may be null in one.
            let same = theirs == ours
                || matches!(
                    (theirs, ours),
                    (Some("null"), Some("array" | "object"))
                        | (Some("array" | "object"), Some("null"))
                );
            if !same {
                differences.push(format!("{path} {key}: dockerd {theirs:?}, kiln {ours:?}"));
            }
        }
    }
    // The ping's headers clients negotiate with.
    let (_, head, _) = http(&svc.socket, "GET", "/_ping", None);
    assert!(
        head.to_ascii_lowercase().contains("api-version: 1.41"),
        "{head}"
    );
    for (sock, id) in [(dockerd, &made[0]), (svc.socket.as_path(), &made[1])] {
        http(
            sock,
            "DELETE",
            &format!("/v1.41/containers/{id}?force=1"),
            None,
        );
    }
    let _ = Command::new("docker").args(["rmi", name]).output();
    assert!(differences.is_empty(), "{differences:#?}");
}

/// 200 clients at once on the socket, each listing containers and images
/// five times: every request answered 200.
#[test]
fn the_service_takes_two_hundred_clients_at_once() {
    let Some((_store, svc)) = setup() else {
        return;
    };
    let socket = svc.socket.clone();
    let clients: Vec<_> = (0..200)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|j| {
                        let path = match (i + j) % 2 {
                            0 => "/v1.41/containers/json?all=1",
                            _ => "/v1.41/images/json",
                        };
                        http(&socket, "GET", path, None).0
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert_eq!(statuses.len(), 1000);
    assert!(
        statuses.iter().all(|&s| s == 200),
        "{:?}",
        statuses.iter().filter(|&&s| s != 200).collect::<Vec<_>>()
    );
}

/// A hostile build context: a tar entry climbing out of the context, one
/// written through a symlink pointing out, and a Dockerfile named outside
/// the context. Each is refused with a message, and nothing is written
/// outside.
#[test]
fn a_hostile_build_context_stays_inside() {
    let Some((_store, svc)) = setup() else {
        return;
    };
    let outside = tempfile::tempdir().unwrap();
    let escape = outside.path().join("escaped");
    // A header whose name is written raw: the tar crate refuses `..`.
    let entry = |name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]| {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        (h, data.to_vec())
    };
    let tar_of = |entries: Vec<(tar::Header, Vec<u8>)>| {
        let mut b = tar::Builder::new(Vec::new());
        for (h, data) in entries {
            b.append(&h, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    };
    let dockerfile = entry("Dockerfile", tar::EntryType::Regular, None, b"FROM box:1\n");
    let climb = format!("../../../../../../..{}", escape.display());
    let cases = [
        tar_of(vec![
            dockerfile.clone(),
            entry(&climb, tar::EntryType::Regular, None, b"out"),
        ]),
        tar_of(vec![
            dockerfile.clone(),
            entry(
                "link",
                tar::EntryType::Symlink,
                Some(outside.path().to_str().unwrap()),
                b"",
            ),
            entry("link/escaped", tar::EntryType::Regular, None, b"out"),
        ]),
    ];
    for body in cases {
        let (status, _, answer) = post_bytes(&svc.socket, "/v1.41/build?t=hostile:1", &body);
        // Refused before the build said anything: an HTTP error, as dockerd's.
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains("unpacking the context"), "{answer}");
        assert!(!escape.exists(), "written outside the context: {answer}");
    }
    let body = tar_of(vec![dockerfile]);
    let (_, _, answer) = post_bytes(
        &svc.socket,
        "/v1.41/build?dockerfile=..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        &body,
    );
    assert!(
        answer.contains("Cannot locate specified Dockerfile: ../../../../etc/passwd"),
        "{answer}"
    );
    assert_eq!(svc.ok(&["images", "--format", "{{.Repository}}"]), "box\n");
}

/// The docker CLI's `cp` (both ways, through the archive endpoints),
/// `rename`, `diff`, `update` and `system df`, through kiln's socket.
#[test]
fn the_docker_cli_copies_renames_diffs_and_updates_through_kiln() {
    let Some((_store, svc)) = setup() else {
        return;
    };
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "files",
        "box:1",
        "sh",
        "-c",
        "mkdir /srv && echo inside > /srv/f && touch /srv/ready && exec sleep 1000",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !svc
        .docker(&["exec", "files", "test", "-e", "/srv/ready"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the container made no files"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    svc.ok(&["cp", "files:/srv", h.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(h.join("srv/f")).unwrap(),
        "inside\n"
    );
    std::fs::write(h.join("in"), "from the host\n").unwrap();
    svc.ok(&["cp", h.join("in").to_str().unwrap(), "files:/srv/in"]);
    assert_eq!(
        svc.ok(&["exec", "files", "cat", "/srv/in"]),
        "from the host\n"
    );
    let missing = svc.docker(&["cp", "files:/nope", h.to_str().unwrap()]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("Could not find the file /nope in container files"),
        "{}",
        text(&missing.stderr)
    );
    let diff = svc.ok(&["diff", "files"]);
    for want in ["A /srv", "A /srv/f", "A /srv/in"] {
        assert!(diff.lines().any(|l| l == want), "{want} not in {diff}");
    }
    svc.ok(&["rename", "files", "papers"]);
    assert_eq!(
        svc.ok(&["inspect", "-f", "{{.Name}}", "papers"]),
        "/papers\n"
    );
    svc.ok(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "64m",
        "papers",
    ]);
    assert_eq!(
        svc.ok(&["inspect", "-f", "{{.HostConfig.Memory}}", "papers"]),
        format!("{}\n", 64 << 20)
    );
    let df = svc.ok(&["system", "df"]);
    assert!(df.starts_with("TYPE"), "{df}");
    assert!(df.contains("Containers"), "{df}");
    svc.ok(&["rm", "-f", "papers"]);
}

/// A compose file as people write them, through docker-compose and kiln's
/// socket (inside a network namespace of the test's): a build with args
/// and a target, a healthcheck that gates a one-shot job
/// (`service_healthy`), which gates the front (`service_completed_
/// successfully`); a named volume shared between them, a read-only bind,
/// `environment` and `env_file`, a network alias, `tmpfs`, `cap_add`,
/// `ulimits`, `sysctls`, `logging` options, `init`, `restart`,
/// `stop_grace_period`; then `ps`, `exec`, `logs`, and `down -v`, which
/// leaves nothing behind.
#[test]
fn a_compose_file_as_people_write_them() {
    if !need_root("containers need namespaces")
        || !need_tool(
            "docker-compose",
            "Debian's docker-compose is the client under test",
        )
    {
        return;
    }
    let Some(ns) = crate::networks::Netns::new() else {
        return;
    };
    let Some(store) = store_with_box() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("shop");
    std::fs::create_dir_all(project.join("db")).unwrap();
    std::fs::create_dir_all(project.join("conf")).unwrap();
    std::fs::write(project.join("conf/settings"), "from a bind\n").unwrap();
    std::fs::write(project.join("db.env"), "FROM_FILE=yes\n# a comment\n").unwrap();
    std::fs::write(
        project.join("db/Dockerfile"),
        "FROM box:1 AS base\nARG GREETING=none\nRUN mkdir -p /www && echo \"$GREETING from the db\" > /www/index.html\n\
         FROM base AS final\nRUN echo final > /stage\n\
         FROM base AS broken\nRUN exit 1\n",
    )
    .unwrap();
    std::fs::write(
        project.join("docker-compose.yml"),
        r#"services:
  db:
    build:
      context: ./db
      target: final
      args:
        GREETING: hello
    command: ["sh", "-c", "sleep 1; touch /tmp/ready; exec httpd -f -p 80 -h /www"]
    healthcheck:
      test: ["CMD", "test", "-e", "/tmp/ready"]
      interval: 1s
      timeout: 5s
      retries: 60
    environment:
      ROLE: db
    env_file: ./db.env
    volumes:
      - data:/data
      - ./conf:/conf:ro
    networks:
      back:
        aliases: [database]
    tmpfs: [/scratch]
    cap_add: [NET_ADMIN]
    ulimits:
      nofile: {soft: 1024, hard: 2048}
    sysctls:
      net.core.somaxconn: "511"
    logging:
      driver: json-file
      options: {max-size: 1m, max-file: "2"}
    init: true
    restart: unless-stopped
    stop_grace_period: 2s
  migrate:
    image: box:1
    command: ["sh", "-c", "wget -q -O - http://database/ > /data/migrated"]
    depends_on:
      db: {condition: service_healthy}
    volumes: [data:/data]
    networks: [back]
  web:
    image: box:1
    command: ["sh", "-c", "mkdir -p /w && cp /data/migrated /w/index.html && exec httpd -f -p 80 -h /w"]
    depends_on:
      migrate: {condition: service_completed_successfully}
    volumes: [data:/data:ro]
    networks: [back]
volumes:
  data: {}
networks:
  back: {}
"#,
    )
    .unwrap();
    let socket = dir.path().join("kiln.sock");
    let mut service = ns
        .enter(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(store.path())
        .args(["system", "service", "--timeout", "0", "--socket"])
        .arg(&socket)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the service did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let compose = |args: &[&str]| {
        Command::new("docker-compose")
            .args(args)
            .current_dir(&project)
            .env("DOCKER_HOST", format!("unix://{}", socket.display()))
            .env("HOME", dir.path())
            .env("COMPOSE_DOCKER_CLI_BUILD", "0")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ok_compose = |args: &[&str]| {
        let out = compose(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    // `up -d` returns once the front started: the db was healthy and the
    // job done before it.
    ok_compose(&["up", "-d"]);
    let ps = ok_compose(&["ps"]);
    let row = |name: &str| {
        ps.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("shop_db_1").contains("Up (healthy)"), "{ps}");
    assert!(row("shop_migrate_1").contains("Exit 0"), "{ps}");
    assert!(row("shop_web_1").contains("Up"), "{ps}");
    // The front serves what the job fetched from the db by its alias.
    let page = ok_compose(&[
        "exec",
        "-T",
        "web",
        "wget",
        "-q",
        "-O",
        "-",
        "http://127.0.0.1/",
    ]);
    assert_eq!(page, "hello from the db\n");
    // The db as its options made it.
    let inside = ok_compose(&[
        "exec",
        "-T",
        "db",
        "sh",
        "-c",
        "echo $ROLE $FROM_FILE; cat /stage /conf/settings; touch /conf/x 2>/dev/null || echo read-only; \
         ulimit -n; ulimit -Hn; cat /proc/sys/net/core/somaxconn; grep -c ' /scratch tmpfs ' /proc/mounts; \
         ip link set lo mtu 1400 && echo net-admin",
    ]);
    assert_eq!(
        inside,
        "db yes\nfinal\nfrom a bind\nread-only\n1024\n2048\n511\n1\nnet-admin\n"
    );
    let id = ok_compose(&["ps", "-q", "db"]).trim().to_string();
    let inspect = Command::new("docker")
        .args(["inspect", &id])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env("DOCKER_CONFIG", dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let hc = &v[0]["HostConfig"];
    assert_eq!(hc["Init"], true, "{hc}");
    assert_eq!(hc["RestartPolicy"]["Name"], "unless-stopped", "{hc}");
    assert_eq!(hc["LogConfig"]["Config"]["max-size"], "1m", "{hc}");
    assert_eq!(v[0]["Config"]["StopTimeout"], 2, "{}", v[0]["Config"]);
    let logs = ok_compose(&["logs", "--no-color", "migrate"]);
    assert!(logs.contains("migrate_1"), "{logs}");
    let down = compose(&["down", "-v"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    let left = Command::new("docker")
        .args(["ps", "-aq"])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env("DOCKER_CONFIG", dir.path())
        .output()
        .unwrap();
    assert_eq!(text(&left.stdout), "");
    let volumes = Command::new("docker")
        .args(["volume", "ls", "-q"])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env("DOCKER_CONFIG", dir.path())
        .output()
        .unwrap();
    assert_eq!(text(&volumes.stdout), "", "down -v removes the volume");
    assert!(
        !ns.links()
            .iter()
            .any(|l| l.starts_with("kb-") || l.starts_with("kv")),
        "down leaves no link: {:?}",
        ns.links()
    );
    let _ = service.kill();
    let _ = service.wait();
}

/// `kiln system service --bridge none`, as `dockerd --bridge=none`: a
/// container of the default network mode has a namespace of its own with
/// loopback only and docker's `bridge` entry (with the endpoint options
/// asked for); it is connected to a network while it runs and gets an
/// address there; legacy links give the linked container's name and
/// environment and show in its names until removed; a commit records
/// docker's Container, ContainerConfig and Parent.
#[test]
fn the_default_network_without_a_bridge_links_and_commit_origins() {
    if !need_root("containers need namespaces")
        || !need_tool("python3", "docker-py is the client under test")
    {
        return;
    }
    let has_docker_py = Command::new("/usr/bin/python3")
        .args(["-c", "import docker"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_docker_py {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3-docker missing in CI: .ci/run must install it"
        );
        eprintln!("skipped: Debian's python3-docker is not installed");
        return;
    }
    let Some(ns) = crate::networks::Netns::new() else {
        return;
    };
    let Some(store) = store_with_box() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kiln.sock");
    let mut service = ns
        .enter(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(store.path())
        .args([
            "system",
            "service",
            "--timeout",
            "0",
            "--bridge",
            "none",
            "--socket",
        ])
        .arg(&socket)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the service did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let script = r#"
import docker, sys
c = docker.APIClient(base_url="unix://" + sys.argv[1])
up = c.create_container("box:1", "cat", stdin_open=True, environment={"FOO": "1"}, name="up")
c.start(up)
me = c.create_container("box:1", ["sh", "-c", "env | grep ^DB_ | sort; ip -o link | cut -d' ' -f2; exec cat"], stdin_open=True, name="me",
    host_config=c.create_host_config(links={"up": "db"}),
    networking_config=c.create_networking_config({"bridge": c.create_endpoint_config(driver_opt={"k": "v"})}))
c.start(me)
seen = b""
for chunk in c.logs(me, stream=True, follow=True):
    seen += chunk
    if seen.endswith(b"lo:\n"):
        break
print(seen.decode().replace("\n", " "))
d = c.inspect_container(me)
print(d["HostConfig"]["NetworkMode"], d["HostConfig"]["Links"], sorted(d["NetworkSettings"]["Networks"]), d["NetworkSettings"]["Networks"]["bridge"]["DriverOpts"])
print(sorted(n for x in c.containers(all=True) for n in x["Names"]))
net = c.create_network("later", ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.89.40.0/24")]))["Id"]
c.connect_container_to_network(me, net, ipv4_address="10.89.40.9")
print(list(c.inspect_network(net)["Containers"]) == [me["Id"]])
e = c.exec_create(me, ["sh", "-c", "ip -4 -o addr show eth0 | cut -d' ' -f2,7"])
print(c.exec_start(e).decode().strip())
c.disconnect_container_from_network(me, net)
print(c.inspect_network(net)["Containers"])
c.remove_container("me/db", link=True)
print(c.inspect_container(me)["HostConfig"]["Links"], sorted(n for x in c.containers(all=True) for n in x["Names"]))
img = c.commit(me)["Id"]
i = c.inspect_image(img)
print(i["Container"] == me["Id"], i["ContainerConfig"]["Image"], i["Parent"] == c.inspect_image("box:1")["Id"])
c.remove_container(me, force=True); c.remove_container(up, force=True); c.remove_network(net)
"#;
    let out = ns
        .enter("/usr/bin/python3")
        .args(["-c", script])
        .arg(&socket)
        .output()
        .unwrap();
    let _ = service.kill();
    let _ = service.wait();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout),
        "DB_ENV_FOO=1 DB_ENV_HOSTNAME=up DB_NAME=/me/db lo: \n\
         default ['/up:/me/db'] ['bridge'] {'k': 'v'}\n\
         ['/me', '/me/db', '/up']\n\
         True\n\
         eth0 10.89.40.9/32\n\
         {}\n\
         None ['/me', '/up']\n\
         True box:1 True\n"
    );
}

/// `--security-opt` through the docker CLI means what it means on kiln's
/// own: seccomp unconfined, a profile file (the CLI sends its JSON),
/// no-new-privileges, SELinux and AppArmor opt-outs taken as the nothing
/// they change here, a profile asked of AppArmor refused; a memory limit
/// under docker's floor refused in docker's words.
#[test]
fn security_options_and_limits_mean_the_same_through_the_api() {
    let Some((_store, svc)) = setup() else {
        return;
    };
    let status = |opts: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend(opts);
        args.extend([
            "box:1",
            "grep",
            "-E",
            "^(Seccomp|NoNewPrivs):",
            "/proc/self/status",
        ]);
        svc.ok(&args).replace('\t', " ")
    };
    assert_eq!(status(&[]), "NoNewPrivs: 0\nSeccomp: 2\n");
    assert_eq!(
        status(&["--security-opt", "seccomp=unconfined"]),
        "NoNewPrivs: 0\nSeccomp: 0\n"
    );
    assert_eq!(
        status(&[
            "--security-opt",
            "no-new-privileges",
            "--security-opt",
            "label=disable"
        ]),
        "NoNewPrivs: 1\nSeccomp: 2\n"
    );
    // A profile that refuses mkdir, sent as JSON by the docker CLI.
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = svc.docker(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        "box:1",
        "mkdir",
        "/x",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Operation not permitted"),
        "{}",
        text(&out.stderr)
    );
    let refused = svc.docker(&[
        "run",
        "--rm",
        "--security-opt",
        "apparmor=mine",
        "box:1",
        "true",
    ]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(
        text(&refused.stderr).contains("kiln applies no SELinux label or AppArmor profile"),
        "{}",
        text(&refused.stderr)
    );
    // What kiln does not take is refused by name, never dropped.
    let unknown = svc.docker(&[
        "run",
        "--rm",
        "--oom-score-adj",
        "500",
        "--dns-search",
        "example.org",
        "box:1",
        "true",
    ]);
    assert_eq!(unknown.status.code(), Some(125));
    assert!(
        text(&unknown.stderr)
            .contains("kiln's API does not take HostConfig.DnsSearch, HostConfig.OomScoreAdj yet"),
        "{}",
        text(&unknown.stderr)
    );
    let small = svc.docker(&["run", "--rm", "-m", "1m", "box:1", "true"]);
    assert_eq!(small.status.code(), Some(125));
    assert!(
        text(&small.stderr).contains("Minimum memory limit allowed is 6MB"),
        "{}",
        text(&small.stderr)
    );
}
