//! Containers that outlive the command (issue 13): `run -d` with a monitor,
//! `ps`, `logs`, `stop`, `kill`, `start`, `restart`, `wait`, `rm`,
//! `container prune`, `inspect`, restart policies, log rotation, and what
//! happens when a monitor is killed. Docker's walk-through, run as a user
//! runs it.

use crate::registry::{free_port, k, ok, store_with_box};
use crate::util::{need_root, text};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// A store with busybox as `box:1`, when containers can run here.
fn box_store() -> Option<tempfile::TempDir> {
    if !need_root("containers need namespaces") {
        return None;
    }
    store_with_box()
}

fn inspect(root: &Path, name: &str) -> Value {
    let out = ok(k(root, &[], &["inspect", "--type", "container", name]));
    serde_json::from_str::<Value>(&out).unwrap()[0].clone()
}

fn get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Waits until the monitor of container `name` has ended: then nothing
/// more can happen to it (no restart, no state change) but by a command.
fn wait_monitor_gone(root: &Path, name: &str) {
    let id = inspect(root, name)["Id"].as_str().unwrap().to_string();
    let state: Value = serde_json::from_slice(
        &std::fs::read(root.join("containers").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    let monitor: kiln::sandbox::process::Recorded =
        serde_json::from_value(state["monitor"].clone()).expect("a monitor was recorded");
    // Gone, a zombie, or its pid another process's now.
    wait_for("the monitor to end", || !monitor.alive());
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Docker's walk-through: a web server run detached, seen in `ps`, its
/// logs, stopped, started again, stopped for good and removed.
#[test]
fn a_detached_web_server_lives_its_whole_life() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello from kiln\n").unwrap();
    let port = free_port();
    let volume = format!("{}:/www:ro", www.path().display());
    let server =
        format!("echo serving; echo 'a warning' >&2; exec httpd -f -p 127.0.0.1:{port} -h /www");
    let id = ok(k(
        root,
        &[],
        &[
            "run", "-d", "--name", "web", "-v", &volume, "box:1", "sh", "-c", &server,
        ],
    ));
    let id = id.trim();
    assert_eq!(id.len(), 64, "run -d prints the id: {id}");
    wait_for("the server", || get(port, "/").is_some());
    assert!(get(port, "/").unwrap().ends_with("hello from kiln\n"));

    let ps = ok(k(root, &[], &["ps"]));
    let lines: Vec<&str> = ps.lines().collect();
    assert!(
        lines[0].starts_with("CONTAINER ID   IMAGE   COMMAND"),
        "{ps}"
    );
    assert!(lines[1].starts_with(&id[..12]), "{ps}");
    assert!(
        lines[1].contains(" Up ") && lines[1].ends_with(" web"),
        "{ps}"
    );

    // stdout and stderr are kept apart, after the fact.
    let logs = k(root, &[], &["logs", "web"]);
    assert_eq!(text(&logs.stdout), "serving\n");
    assert_eq!(text(&logs.stderr), "a warning\n");
    // --tail counts both streams' lines: the last two are one of each.
    let stamped = text(&k(root, &[], &["logs", "-t", "--tail", "2", "web"]).stdout);
    assert!(
        stamped.ends_with("Z serving\n") && stamped.starts_with("20"),
        "{stamped}"
    );

    // httpd ends on SIGTERM: the stop takes well under the 10 s timeout.
    let started = Instant::now();
    assert_eq!(ok(k(root, &[], &["stop", "web"])), "web\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(get(port, "/").is_none(), "the server is gone");
    let all = ok(k(
        root,
        &[],
        &["ps", "-a", "--format", "{{.Names}} {{.Status}}"],
    ));
    assert!(all.starts_with("web Exited ("), "{all}");
    assert_eq!(ok(k(root, &[], &["ps", "-q"])), "", "nothing runs");
    let state = inspect(root, "web");
    assert_eq!(state["State"]["Status"], "exited");
    assert_eq!(state["Name"], "/web");

    // start brings the same container back, its files and log kept.
    assert_eq!(ok(k(root, &[], &["start", "web"])), "web\n");
    wait_for("the server again", || get(port, "/").is_some());
    assert_eq!(
        text(&k(root, &[], &["logs", "web"]).stdout),
        "serving\nserving\n"
    );
    // A running container is not removed unless forced.
    let refused = k(root, &[], &["rm", "web"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr)
            .contains("container is running: stop the container before removing or force remove"),
        "{}",
        text(&refused.stderr)
    );
    ok(k(root, &[], &["stop", "-t", "1", "web"]));
    let code = ok(k(root, &[], &["wait", "web"]));
    assert_eq!(
        code.trim(),
        inspect(root, "web")["State"]["ExitCode"].to_string()
    );
    ok(k(root, &[], &["rm", "web"]));
    assert_eq!(ok(k(root, &[], &["ps", "-aq"])), "");
    let gone = k(root, &[], &["logs", "web"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(text(&gone.stderr).contains("No such container: web"));
    assert!(!root.join("containers").join(id).exists());
}

/// `stop` of a process that ignores SIGTERM waits its timeout, then kills;
/// `kill` sends what it is told; `wait` prints the exit code.
#[test]
fn stop_waits_then_kills_and_wait_prints_the_code() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "stubborn",
            "box:1",
            "sh",
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    ));
    wait_for("the trap", || {
        text(&k(root, &[], &["logs", "stubborn"]).stdout) == "ready\n"
    });
    let started = Instant::now();
    ok(k(root, &[], &["stop", "-t", "1", "stubborn"]));
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert_eq!(ok(k(root, &[], &["wait", "stubborn"])), "137\n");
    assert_eq!(inspect(root, "stubborn")["State"]["ExitCode"], 137);

    ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "usr",
            "box:1",
            "sh",
            "-c",
            "trap 'exit 42' USR1; echo ready; while :; do sleep 0.1; done",
        ],
    ));
    wait_for("the trap", || {
        text(&k(root, &[], &["logs", "usr"]).stdout) == "ready\n"
    });
    ok(k(root, &[], &["kill", "-s", "USR1", "usr"]));
    assert_eq!(ok(k(root, &[], &["wait", "usr"])), "42\n");
    let not_running = k(root, &[], &["kill", "usr"]);
    assert_eq!(not_running.status.code(), Some(1));
    assert!(text(&not_running.stderr).contains("is not running"));

    // run -d of a command that is not there fails as docker's does (127),
    // its container left exited.
    let missing = k(
        root,
        &[],
        &["run", "-d", "--name", "nx", "box:1", "no-such-command"],
    );
    assert_eq!(missing.status.code(), Some(127));
    assert!(text(&missing.stderr).contains("executable file not found in $PATH"));
    let nx = ok(k(
        root,
        &[],
        &["ps", "-a", "--filter", "name=nx", "--format", "{{.Status}}"],
    ));
    assert!(nx.starts_with("Exited (127)"), "{nx}");
    // A foreground run is a container too; --rm leaves none.
    let fg = k(
        root,
        &[],
        &["run", "--name", "fg", "box:1", "sh", "-c", "exit 4"],
    );
    assert_eq!(fg.status.code(), Some(4));
    let all = ok(k(
        root,
        &[],
        &["ps", "-a", "--filter", "name=fg", "--format", "{{.Status}}"],
    ));
    assert!(all.starts_with("Exited (4) "), "{all}");
    ok(k(
        root,
        &[],
        &["run", "--rm", "--name", "gone", "box:1", "true"],
    ));
    assert_eq!(
        ok(k(root, &[], &["ps", "-a", "--filter", "name=gone", "-q"])),
        ""
    );
    // Names are unique.
    let taken = k(root, &[], &["run", "--name", "fg", "box:1", "true"]);
    assert_eq!(taken.status.code(), Some(125));
    assert!(text(&taken.stderr).contains("The container name \"/fg\" is already in use"));
    let refused = k(root, &[], &["run", "--restart", "always", "box:1", "true"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("--restart needs -d"));
    let pruned = ok(k(root, &[], &["container", "prune", "-f"]));
    assert_eq!(pruned.lines().count(), 5, "{pruned}");
    assert_eq!(ok(k(root, &[], &["ps", "-aq"])), "");
}

/// `--restart on-failure:3`: exactly three restarts, each after a longer
/// wait; a user's stop is never undone.
#[test]
fn on_failure_restarts_three_times_with_growing_delays() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "flaky",
            "--restart",
            "on-failure:3",
            "box:1",
            "sh",
            "-c",
            "echo run; exit 3",
        ],
    ));
    wait_for("the last run", || {
        inspect(root, "flaky")["State"]["Status"] == "exited"
            && inspect(root, "flaky")["RestartCount"] == 3
    });
    // Its monitor gave up (the policy's limit) and ended: nothing more
    // can happen, and what it left is final.
    wait_monitor_gone(root, "flaky");
    let state = inspect(root, "flaky");
    assert_eq!(
        (
            state["RestartCount"].as_i64(),
            state["State"]["ExitCode"].as_i64()
        ),
        (Some(3), Some(3))
    );
    assert_eq!(state["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    let stamped = text(&k(root, &[], &["logs", "-t", "flaky"]).stdout);
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = stamped
        .lines()
        .map(|l| chrono::DateTime::parse_from_rfc3339(l.split(' ').next().unwrap()).unwrap())
        .collect();
    assert_eq!(
        times.len(),
        4,
        "one first run and three restarts: {stamped}"
    );
    let gaps: Vec<i64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    // Docker's back-off waits 100, 200 and 400 ms before the restarts
    // (the doubling itself is a unit test: starting a container under load
    // takes a varying time on top).
    assert!(
        gaps[0] >= 100 && gaps[1] >= 200 && gaps[2] >= 400,
        "{gaps:?}"
    );

    // always: restarted until a user stops it, then not again.
    ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "always",
            "--restart",
            "always",
            "box:1",
            "sh",
            "-c",
            "sleep 0.2",
        ],
    ));
    wait_for("a restart", || {
        inspect(root, "always")["RestartCount"].as_i64() >= Some(1)
    });
    ok(k(root, &[], &["stop", "always"]));
    let count = inspect(root, "always")["RestartCount"].clone();
    wait_monitor_gone(root, "always");
    let after = inspect(root, "always");
    assert_eq!(after["State"]["Status"], "exited");
    assert_eq!(
        after["RestartCount"], count,
        "a stopped container stays stopped"
    );
}

/// A monitor killed with SIGKILL takes its container with it: `ps` says
/// so, and `rm -f` leaves no process, cgroup or file. Twenty containers
/// started at once all run.
#[test]
fn a_killed_monitor_is_reported_and_twenty_start_at_once() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    let id = ok(k(
        root,
        &[],
        &["run", "-d", "--name", "victim", "box:1", "sleep", "1000"],
    ));
    let id = id.trim().to_string();
    let state: Value = serde_json::from_slice(
        &std::fs::read(root.join("containers").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    let monitor = state["monitor"]["pid"].as_i64().unwrap();
    let init = state["init"]["pid"].as_i64().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &monitor.to_string()])
        .status()
        .unwrap();
    wait_for("the container to die", || {
        !Path::new(&format!("/proc/{init}")).exists()
    });
    let ps = ok(k(
        root,
        &[],
        &["ps", "-a", "--format", "{{.Names}} {{.Status}}"],
    ));
    assert!(ps.starts_with("victim Exited (137)"), "{ps}");
    assert_eq!(ok(k(root, &[], &["ps", "-q"])), "");
    ok(k(root, &[], &["rm", "-f", "victim"]));
    assert!(!root.join("containers").join(&id).exists());
    let cgroups = std::process::Command::new("find")
        .args(["/sys/fs/cgroup", "-name", &format!("*{id}*")])
        .output()
        .unwrap();
    assert_eq!(text(&cgroups.stdout), "", "no cgroup is left");

    let starts: Vec<_> = (0..20)
        .map(|_| {
            let root = root.to_path_buf();
            std::thread::spawn(move || k(&root, &[], &["run", "-d", "box:1", "sleep", "60"]))
        })
        .collect();
    for s in starts {
        ok(s.join().unwrap());
    }
    let running = ok(k(root, &[], &["ps", "-q"]));
    assert_eq!(running.lines().count(), 20, "{running}");
    let ids: Vec<&str> = running.lines().collect();
    let mut args = vec!["rm", "-f"];
    args.extend(ids);
    ok(k(root, &[], &args));
    assert_eq!(ok(k(root, &[], &["ps", "-aq"])), "");
}

/// `--log-opt max-size=1k --log-opt max-file=2`: the log rotates, two files
/// at most, the newest lines kept.
#[test]
fn a_log_rotates_at_its_size() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    let id = ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--log-opt",
            "max-size=1k",
            "--log-opt",
            "max-file=2",
            "box:1",
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done",
        ],
    ));
    let id = id.trim();
    assert_eq!(ok(k(root, &[], &["wait", id])), "0\n");
    let dir = root.join("containers").join(id);
    assert!(dir.join("ctr.log.1").exists());
    assert!(!dir.join("ctr.log.2").exists());
    let total: u64 = ["ctr.log", "ctr.log.1"]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
        .sum();
    assert!(total <= 2 * 1024 + 200, "{total}");
    let logs = text(&k(root, &[], &["logs", "--tail", "1", id]).stdout);
    assert_eq!(logs, "line 199\n");
    let bad = k(
        root,
        &[],
        &["run", "-d", "--log-opt", "max-file=0", "box:1", "true"],
    );
    assert_eq!(bad.status.code(), Some(2));
}

/// `exec` joins the running container: its processes, files and network;
/// exit codes pass through (126/127 as docker). `commit` makes an image of
/// its changes (a whiteout included) that kiln and docker both run.
#[test]
fn exec_into_a_running_container_and_commit_it() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    let port = free_port();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "served\n").unwrap();
    let volume = format!("{}:/www:ro", www.path().display());
    ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "box",
            "-v",
            &volume,
            "box:1",
            "httpd",
            "-f",
            "-p",
            &format!("127.0.0.1:{port}"),
            "-h",
            "/www",
        ],
    ));
    wait_for("the server", || get(port, "/").is_some());
    // wget inside the container reaches the server (the same network).
    let fetched = ok(k(
        root,
        &[],
        &[
            "exec",
            "box",
            "wget",
            "-qO-",
            &format!("http://127.0.0.1:{port}/"),
        ],
    ));
    assert_eq!(fetched, "served\n");
    // The same PID namespace: the server is there, kiln's init is PID 1.
    let ps = ok(k(root, &[], &["exec", "box", "ps", "-o", "pid,args"]));
    assert!(ps.contains("httpd -f"), "{ps}");
    assert!(ps.lines().nth(1).unwrap().trim().starts_with("1 "), "{ps}");
    // top and stats see the same processes from the host.
    let top = ok(k(root, &[], &["top", "box"]));
    assert!(
        top.starts_with("UID ") && top.contains("httpd -f -p"),
        "{top}"
    );
    let stats = ok(k(root, &[], &["stats", "--no-stream", "box"]));
    let row: Vec<&str> = stats.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!((row[1], row.last().copied()), ("box", Some("2")), "{stats}");
    assert_eq!(
        ok(k(
            root,
            &[],
            &["exec", "-u", "1000:1000", "box", "id", "-u"]
        )),
        "1000\n"
    );
    assert_eq!(
        ok(k(
            root,
            &[],
            &[
                "exec",
                "-w",
                "/tmp",
                "-e",
                "A=b",
                "box",
                "sh",
                "-c",
                "pwd; echo $A"
            ]
        )),
        "/tmp\nb\n"
    );
    assert_eq!(
        k(root, &[], &["exec", "box", "sh", "-c", "exit 3"])
            .status
            .code(),
        Some(3)
    );
    // -i passes standard input; -t gives the process a pty of the
    // container's own devpts (`script` gives this test a terminal).
    let mut cat = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    cat.arg("--root")
        .arg(root)
        .args(["exec", "-i", "box", "cat"]);
    let piped = {
        use std::io::Write;
        let mut child = cat
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"through stdin\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert_eq!(text(&piped.stdout), "through stdin\n");
    if crate::util::need_tool("script", "it gives exec -t a terminal") {
        let line = format!(
            "{} --root {} exec -t box tty",
            env!("CARGO_BIN_EXE_kiln"),
            root.display()
        );
        let tty = std::process::Command::new("script")
            .args(["-qc", &line, "/dev/null"])
            .output()
            .unwrap();
        assert!(
            text(&tty.stdout).starts_with("/dev/pts/"),
            "{}",
            text(&tty.stdout)
        );
    }
    // docker exec's code for a process that could not start: 126.
    let missing = k(root, &[], &["exec", "box", "no-such-command"]);
    assert_eq!(missing.status.code(), Some(126));
    assert!(text(&missing.stderr).contains("executable file not found in $PATH"));

    // Changes made through exec, committed: a new file, a removed one.
    ok(k(
        root,
        &[],
        &[
            "exec",
            "box",
            "sh",
            "-c",
            "echo committed > /note; rm /bin/vi",
        ],
    ));
    let id = ok(k(
        root,
        &[],
        &[
            "commit",
            "-m",
            "a note",
            "-c",
            "CMD [\"cat\", \"/note\"]",
            "box",
            "noted:1",
        ],
    ));
    assert!(id.starts_with("sha256:"), "{id}");
    // Frozen while read, thawed after: it still serves.
    assert!(get(port, "/").unwrap().ends_with("served\n"));
    let box_id = inspect(root, "box")["Id"].as_str().unwrap().to_string();
    // Its freezer group, on the hierarchy mounted, says thawed.
    let (file, thawed) = match crate::util::cgroup_v2() {
        true => (format!("/sys/fs/cgroup/kiln/{box_id}/cgroup.freeze"), "0"),
        false => (
            format!("/sys/fs/cgroup/freezer/kiln/{box_id}/freezer.state"),
            "THAWED",
        ),
    };
    let state = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(state.trim(), thawed, "{file}");
    assert_eq!(ok(k(root, &[], &["run", "--rm", "noted:1"])), "committed\n");
    let gone = k(root, &[], &["run", "--rm", "noted:1", "ls", "/bin/vi"]);
    assert_ne!(gone.status.code(), Some(0), "the removal is in the layer");
    let history = ok(k(root, &[], &["history", "noted:1"]));
    assert!(
        history.lines().nth(1).unwrap().contains("a note"),
        "{history}"
    );
    if crate::util::docker_ready() {
        let tar = tempfile::tempdir().unwrap();
        let archive = tar.path().join("noted.tar");
        ok(k(
            root,
            &[],
            &[
                "save",
                "--format",
                "docker",
                "-o",
                archive.to_str().unwrap(),
                "noted:1",
            ],
        ));
        let load = crate::util::docker_cmd()
            .args(["load", "-i"])
            .arg(&archive)
            .output()
            .unwrap();
        assert!(load.status.success(), "{}", text(&load.stderr));
        let run = crate::util::docker_cmd()
            .args(["run", "--rm", "--network", "none", "noted:1"])
            .output()
            .unwrap();
        assert_eq!(text(&run.stdout), "committed\n", "{}", text(&run.stderr));
        let _ = crate::util::docker_cmd().args(["rmi", "noted:1"]).output();
    }
    ok(k(root, &[], &["rm", "-f", "box"]));
    let not_running = k(root, &[], &["exec", "box", "true"]);
    assert_eq!(not_running.status.code(), Some(1));
}

/// A named volume keeps what one container wrote for the next; a new one
/// starts with the image's content at its path; one in use is not removed;
/// an image's VOLUME gets an anonymous volume that `rm -v` removes.
#[test]
fn volumes_keep_data_beyond_a_container() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    ok(k(
        root,
        &[],
        &[
            "run",
            "--rm",
            "-v",
            "data:/data",
            "box:1",
            "sh",
            "-c",
            "echo kept > /data/f",
        ],
    ));
    assert_eq!(
        ok(k(
            root,
            &[],
            &[
                "run",
                "--rm",
                "-v",
                "data:/data:ro",
                "box:1",
                "cat",
                "/data/f"
            ]
        )),
        "kept\n"
    );
    let ro = k(
        root,
        &[],
        &[
            "run",
            "--rm",
            "-v",
            "data:/data:ro",
            "box:1",
            "sh",
            "-c",
            "echo x > /data/g",
        ],
    );
    assert_ne!(ro.status.code(), Some(0));
    // Copy-up: a new volume over /etc starts with the image's /etc.
    assert!(
        ok(k(
            root,
            &[],
            &[
                "run",
                "--rm",
                "-v",
                "etc:/etc",
                "box:1",
                "cat",
                "/etc/passwd"
            ]
        ))
        .starts_with("root:")
    );
    assert_eq!(ok(k(root, &[], &["volume", "ls", "-q"])), "data\netc\n");
    let df = ok(k(root, &[], &["system", "df"]));
    let vols: Vec<&str> = df
        .lines()
        .find(|l| l.starts_with("Local Volumes"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        (vols[2], vols[3]),
        ("2", "0"),
        "two volumes, none in use: {df}"
    );
    let inspected: Value =
        serde_json::from_str(&ok(k(root, &[], &["volume", "inspect", "data"]))).unwrap();
    assert_eq!(inspected[0]["Name"], "data");
    assert!(
        inspected[0]["Mountpoint"]
            .as_str()
            .unwrap()
            .ends_with("/volumes/data/_data")
    );

    ok(k(
        root,
        &[],
        &["run", "--name", "user", "-v", "data:/data", "box:1", "true"],
    ));
    let refused = k(root, &[], &["volume", "rm", "data"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("volume is in use"));
    ok(k(root, &[], &["rm", "user"]));
    // kiln prune leaves volumes alone.
    ok(k(root, &[], &["prune"]));
    assert_eq!(ok(k(root, &[], &["volume", "rm", "data"])), "data\n");

    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM box:1\nRUN mkdir /v && echo seed > /v/seed\nVOLUME /v\n",
    )
    .unwrap();
    ok(k(
        root,
        &[],
        &["build", "-q", "-t", "vol:1", ctx.path().to_str().unwrap()],
    ));
    ok(k(
        root,
        &[],
        &[
            "run",
            "--name",
            "anon",
            "vol:1",
            "sh",
            "-c",
            "cat /v/seed; echo more > /v/more",
        ],
    ));
    assert_eq!(ok(k(root, &[], &["volume", "ls", "-q"])).lines().count(), 2);
    ok(k(root, &[], &["rm", "-v", "anon"]));
    assert_eq!(ok(k(root, &[], &["volume", "ls", "-q"])), "etc\n");
    let bad = k(
        root,
        &[],
        &["run", "--rm", "-v", "bad/name:/x", "box:1", "true"],
    );
    assert_ne!(bad.status.code(), Some(0));
}

/// A healthcheck (the image's HEALTHCHECK, or --health-* over it) run by
/// the monitor: starting, unhealthy after its retries, healthy once the
/// check passes, unhealthy again; `ps` and its `health=` filter and
/// `inspect` show it.
#[test]
fn a_healthcheck_flips_between_unhealthy_and_healthy() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM box:1\nHEALTHCHECK --interval=1h --retries=2 CMD test -f /ok\n",
    )
    .unwrap();
    ok(k(
        root,
        &[],
        &[
            "build",
            "-q",
            "-t",
            "checked:1",
            ctx.path().to_str().unwrap(),
        ],
    ));
    // The image's check with a shorter interval from the flags.
    ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "hc",
            "--health-interval",
            "200ms",
            "checked:1",
            "sleep",
            "100",
        ],
    ));
    let health = |root: &Path| inspect(root, "hc")["State"]["Health"].clone();
    // Before its first check (the image's interval is an hour) it is
    // starting.
    ok(k(
        root,
        &[],
        &["run", "-d", "--name", "early", "checked:1", "sleep", "100"],
    ));
    assert_eq!(
        inspect(root, "early")["State"]["Health"]["Status"],
        "starting"
    );
    let ps = ok(k(
        root,
        &[],
        &["ps", "--filter", "name=early", "--format", "{{.Status}}"],
    ));
    assert!(ps.trim_end().ends_with("(health: starting)"), "{ps}");
    wait_for("unhealthy", || health(root)["Status"] == "unhealthy");
    let ps = ok(k(root, &[], &["ps", "--format", "{{.Status}}"]));
    assert!(ps.trim_end().ends_with("(unhealthy)"), "{ps}");
    assert!(health(root)["FailingStreak"].as_i64() >= Some(2));
    ok(k(root, &[], &["exec", "hc", "touch", "/ok"]));
    wait_for("healthy", || health(root)["Status"] == "healthy");
    assert_eq!(
        ok(k(root, &[], &["ps", "-q", "--filter", "health=healthy"]))
            .lines()
            .count(),
        1
    );
    assert_eq!(
        ok(k(root, &[], &["ps", "-q", "--filter", "health=unhealthy"])),
        ""
    );
    let log = health(root)["Log"].clone();
    assert!(log.as_array().unwrap().len() <= 5);
    assert_eq!(log.as_array().unwrap().last().unwrap()["ExitCode"], 0);
    ok(k(root, &[], &["exec", "hc", "rm", "/ok"]));
    wait_for("unhealthy again", || health(root)["Status"] == "unhealthy");
    // --no-healthcheck: none at all.
    ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "plain",
            "--no-healthcheck",
            "checked:1",
            "sleep",
            "100",
        ],
    ));
    assert_eq!(inspect(root, "plain")["State"]["Health"], Value::Null);
    ok(k(root, &[], &["rm", "-f", "hc", "plain", "early"]));
}

/// The `docker run` flags scripts pass, each doing what docker does.
#[test]
fn docker_run_flags_scripts_pass() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    let run = |flags: &[&str], script: &str| {
        let mut args = vec!["run", "--rm"];
        args.extend(flags);
        args.extend(["box:1", "sh", "-c", script]);
        ok(k(root, &[], &args))
    };
    let bnd = |flags: &[&str]| {
        run(flags, "grep CapBnd /proc/self/status")
            .trim()
            .rsplit('\t')
            .next()
            .unwrap()
            .to_string()
    };
    // Docker's default set, then changed by name (with or without CAP_).
    assert_eq!(bnd(&[]), "00000000a80425fb");
    assert_eq!(
        bnd(&["--cap-drop", "ALL", "--cap-add", "chown"]),
        "0000000000000001"
    );
    assert_eq!(bnd(&["--cap-add", "CAP_NET_ADMIN"]), "00000000a80435fb");
    assert_ne!(bnd(&["--privileged"]), "00000000a80425fb");
    // --privileged: the host's device nodes too (not its terminals).
    if Path::new("/dev/loop0").exists() {
        assert_eq!(
            run(&["--privileged"], "test -b /dev/loop0 && echo block"),
            "block\n"
        );
    }
    assert_eq!(run(&[], "test -e /dev/loop0 || echo none"), "none\n");
    let bad = k(
        root,
        &[],
        &["run", "--rm", "--cap-add", "NOPE", "box:1", "true"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("unknown capability CAP_NOPE"));
    // /etc/hosts, /etc/resolv.conf, /dev/shm, tmpfs, ulimits.
    assert_eq!(
        run(
            &["--add-host", "db:10.0.0.5", "--dns", "192.0.2.53"],
            "tail -1 /etc/hosts; cat /etc/resolv.conf"
        ),
        "10.0.0.5\tdb\nnameserver 192.0.2.53\n"
    );
    let df = run(
        &["--shm-size", "1m", "--tmpfs", "/scratch:size=2m"],
        "df -k /dev/shm /scratch | tail -2 | awk '{print $2}'",
    );
    assert_eq!(df, "1024\n2048\n");
    assert_eq!(
        run(&["--ulimit", "nofile=100:200"], "ulimit -n; ulimit -Hn"),
        "100\n200\n"
    );
    // --mount: a volume, read-only the second time; a bind; a tmpfs.
    run(
        &["--mount", "type=volume,source=mv,target=/m"],
        "echo ok > /m/f",
    );
    assert_eq!(
        run(
            &["--mount", "type=volume,source=mv,target=/m,readonly"],
            "cat /m/f"
        ),
        "ok\n"
    );
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("h"), "host\n").unwrap();
    let bind = format!(
        "type=bind,source={},target=/h,readonly",
        host.path().display()
    );
    assert_eq!(run(&["--mount", &bind], "cat /h/h"), "host\n");
    assert_eq!(
        run(
            &["--mount", "type=tmpfs,target=/t"],
            "mount | grep ' /t ' | cut -d' ' -f1"
        ),
        "tmpfs\n"
    );
    let bad = k(
        root,
        &[],
        &[
            "run",
            "--rm",
            "--mount",
            "type=nfs,target=/x",
            "box:1",
            "true",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    // cgroup limits: swap, shares, cpuset.
    let groups = run(
        &[
            "-m",
            "64m",
            "--memory-swap",
            "128m",
            "--cpu-shares",
            "512",
            "--cpuset-cpus",
            "0",
        ],
        "cat /proc/self/cgroup",
    );
    let id_of = |controller: &str| {
        groups
            .lines()
            .find(|l| l.split(':').nth(1) == Some(controller))
            .map(|l| l.rsplit(':').next().unwrap().to_string())
    };
    assert!(
        id_of("cpuset").is_some_and(|p| p.starts_with("/kiln/")),
        "{groups}"
    );
    let bad = k(
        root,
        &[],
        &["run", "--rm", "--memory-swap", "1g", "box:1", "true"],
    );
    assert!(text(&bad.stderr).contains("You should always set the Memory limit"));
    // --device: the node usable inside, a devices cgroup allowing it; the
    // same node bound with -v is not.
    if Path::new("/dev/fuse").exists() {
        assert_eq!(
            run(
                &["--device", "/dev/fuse"],
                "head -c 0 /dev/fuse && echo opened"
            ),
            "opened\n"
        );
        assert_eq!(
            run(
                &["-m", "64m", "--device", "/dev/fuse:/dev/fuse:rw"],
                "head -c 0 /dev/fuse && echo opened"
            ),
            "opened\n"
        );
        let plain = k(
            root,
            &[],
            &[
                "run",
                "--rm",
                "-m",
                "64m",
                "-v",
                "/dev/fuse:/dev/fuse",
                "box:1",
                "head",
                "-c",
                "0",
                "/dev/fuse",
            ],
        );
        assert_ne!(
            plain.status.code(),
            Some(0),
            "a bound node is not a device grant"
        );
    }
    let bad = k(
        root,
        &[],
        &["run", "--rm", "--device", "/etc/passwd", "box:1", "true"],
    );
    assert_eq!(bad.status.code(), Some(2));
    // Namespaced sysctls only, the host's untouched.
    let host = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    assert_eq!(
        run(
            &[
                "--network",
                "none",
                "--sysctl",
                "kernel.shmmax=1000000",
                "--sysctl",
                "net.ipv4.ip_forward=1"
            ],
            "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward"
        ),
        "1000000\n1\n"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        host
    );
    for (sysctl, why) in [
        (
            "net.ipv4.ip_forward=1",
            "not allowed in the host's network namespace",
        ),
        ("kernel.hostname=x", "it is not namespaced"),
        ("kernel.shmmax/../x=1", "is not a sysctl name"),
    ] {
        let bad = k(
            root,
            &[],
            &["run", "--rm", "--sysctl", sysctl, "box:1", "true"],
        );
        assert_eq!(bad.status.code(), Some(125), "{sysctl}");
        assert!(text(&bad.stderr).contains(why), "{}", text(&bad.stderr));
    }
    // Supplementary groups by number and by name.
    assert_eq!(
        run(
            &["-u", "1000", "--group-add", "50", "--group-add", "root"],
            "id -G"
        ),
        "1000 0 50\n"
    );
    let bad = k(
        root,
        &[],
        &[
            "run",
            "--rm",
            "--group-add",
            "nogroup-here",
            "box:1",
            "true",
        ],
    );
    assert_eq!(bad.status.code(), Some(125));
    assert!(text(&bad.stderr).contains("unable to find group nogroup-here"));
    // Accepted for scripts: --init; --pull never finds the image here.
    assert_eq!(run(&["--init", "--pull", "never"], "echo fine"), "fine\n");
}

/// Names and ids that try to leave the store are refused before any path
/// is made of them.
#[test]
fn names_that_leave_the_store_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for (args, want) in [
        (
            &["volume", "create", "../escape"][..],
            "invalid characters for a local volume name",
        ),
        (
            &["run", "--name", "../escape", "box:1", "true"][..],
            "Invalid container name",
        ),
        (
            &["run", "--rm", "-v", "../escape:/x", "box:1", "true"][..],
            "invalid volume",
        ),
        (&["logs", "../../etc"][..], "No such container: ../../etc"),
        (&["rm", "/../../etc"][..], "No such container"),
        (&["__monitor", "../../../etc"][..], "is not a container id"),
    ] {
        let out = k(r, &[], args);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(said.contains(want), "{args:?}: {said}");
    }
    assert!(!r.join("escape").exists() && !r.parent().unwrap().join("escape").exists());
    assert!(!r.join("volumes").join("..").join("escape").exists());
}

/// `kiln prune` keeps the layers containers are made of, even of an image
/// no name reaches any more: a running container keeps running, a stopped
/// one starts again.
#[test]
fn prune_keeps_what_containers_are_made_of() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM box:1\nRUN echo layer > /layer\n",
    )
    .unwrap();
    ok(k(
        root,
        &[],
        &["build", "-q", "-t", "gone:1", ctx.path().to_str().unwrap()],
    ));
    ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "keeper",
            "gone:1",
            "sh",
            "-c",
            "cat /layer; sleep 100",
        ],
    ));
    ok(k(root, &[], &["rmi", "gone:1"]));
    ok(k(root, &[], &["prune"]));
    assert_eq!(
        ok(k(root, &[], &["exec", "keeper", "cat", "/layer"])),
        "layer\n",
        "the running container's layers are there"
    );
    ok(k(root, &[], &["stop", "-t", "1", "keeper"]));
    ok(k(root, &[], &["prune"]));
    ok(k(root, &[], &["start", "keeper"]));
    ok(k(root, &[], &["stop", "-t", "1", "keeper"]));
    assert_eq!(ok(k(root, &[], &["logs", "keeper"])), "layer\nlayer\n");
    ok(k(root, &[], &["rm", "keeper"]));
}

/// `-p 127.0.0.1:HOST:CTR` (issue 14's first scene): a server that listens
/// only on the container's own loopback answers on the host's port; the
/// container has a network namespace of its own; `ps` and `port` show the
/// mapping; a port in use is an error before the container starts; `-P`
/// publishes EXPOSEd ports on free ones.
#[test]
fn published_ports_reach_a_server_on_the_containers_loopback() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "published\n").unwrap();
    let volume = format!("{}:/www:ro", www.path().display());
    let port = free_port();
    let mapping = format!("127.0.0.1:{port}:80");
    ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "pub",
            "-p",
            &mapping,
            "-v",
            &volume,
            "box:1",
            "httpd",
            "-f",
            "-p",
            "127.0.0.1:80",
            "-h",
            "/www",
        ],
    ));
    wait_for("the published port", || {
        get(port, "/").is_some_and(|b| b.ends_with("published\n"))
    });
    // Its own network namespace: loopback only.
    let links = ok(k(root, &[], &["exec", "pub", "cat", "/proc/net/dev"]));
    let names: Vec<&str> = links
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(names, ["lo"], "{links}");
    let ps = ok(k(root, &[], &["ps", "--format", "{{.Names}} {{.Ports}}"]));
    assert_eq!(ps, format!("pub 127.0.0.1:{port}->80/tcp\n"));
    assert_eq!(
        ok(k(root, &[], &["port", "pub"])),
        format!("80/tcp -> 127.0.0.1:{port}\n")
    );
    assert_eq!(
        ok(k(root, &[], &["port", "pub", "80"])),
        format!("127.0.0.1:{port}\n")
    );
    // The same host port again: refused before anything runs.
    let taken = k(
        root,
        &[],
        &[
            "run", "-d", "--name", "second", "-p", &mapping, "box:1", "sleep", "5",
        ],
    );
    assert_eq!(taken.status.code(), Some(125));
    assert!(
        text(&taken.stderr).contains("port is already allocated"),
        "{}",
        text(&taken.stderr)
    );
    ok(k(root, &[], &["rm", "-f", "pub", "second"]));
    assert!(
        get(port, "/").is_none(),
        "the port is closed with its container"
    );

    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), "FROM box:1\nEXPOSE 80\n").unwrap();
    ok(k(
        root,
        &[],
        &[
            "build",
            "-q",
            "-t",
            "exposed:1",
            ctx.path().to_str().unwrap(),
        ],
    ));
    ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "all",
            "-P",
            "-v",
            &volume,
            "exposed:1",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    ));
    let line = ok(k(root, &[], &["port", "all", "80"]));
    let chosen: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(line.starts_with("0.0.0.0:"), "{line}");
    wait_for("the -P port", || {
        get(chosen, "/").is_some_and(|b| b.ends_with("published\n"))
    });
    ok(k(root, &[], &["rm", "-f", "all"]));
    let hostnet = k(
        root,
        &[],
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "-p",
            "80",
            "box:1",
            "true",
        ],
    );
    assert_eq!(hostnet.status.code(), Some(125));
}

/// `kiln pause` freezes every process of a container (the kernel's
/// freezer says FROZEN), inspect and ps say so, exec is refused, a second
/// pause and an unpause of a running one are refused with docker's words;
/// `unpause` thaws it (its counter moves again), and a paused container
/// stops when asked.
#[test]
fn pause_freezes_a_container_until_unpause() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    let out = tempfile::tempdir().unwrap();
    let volume = format!("{}:/out", out.path().display());
    let id = ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "ticker",
            "-v",
            &volume,
            "box:1",
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i > /out/n.tmp; mv /out/n.tmp /out/n; sleep 0.02; done",
        ],
    ));
    let id = id.trim().to_string();
    let count = || {
        std::fs::read_to_string(out.path().join("n"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    wait_for("the counter", || count().is_some());
    assert_eq!(ok(k(root, &[], &["pause", "ticker"])), "ticker\n");
    // The kernel's word that every process is frozen.
    let frozen = match crate::util::cgroup_v2() {
        true => {
            let events =
                crate::util::cgroup_dirs(&[], &format!("kiln/{id}"))[0].join("cgroup.events");
            std::fs::read_to_string(&events)
                .unwrap_or_default()
                .lines()
                .any(|l| l == "frozen 1")
        }
        false => {
            let state = crate::util::cgroup_dirs(&["freezer"], &format!("kiln/{id}"))[0]
                .join("freezer.state");
            std::fs::read_to_string(&state).unwrap_or_default().trim() == "FROZEN"
        }
    };
    assert!(frozen, "the container's group is not frozen");
    let inspected: Value = serde_json::from_str(&ok(k(root, &[], &["inspect", "ticker"]))).unwrap();
    assert_eq!(inspected[0]["State"]["Status"], "paused");
    assert_eq!(inspected[0]["State"]["Paused"], true);
    assert_eq!(inspected[0]["State"]["Running"], true);
    assert!(ok(k(root, &[], &["ps"])).contains("(Paused)"));
    let exec = k(root, &[], &["exec", "ticker", "true"]);
    assert!(!exec.status.success());
    assert!(
        text(&exec.stderr).contains("is paused, unpause the container before exec"),
        "{}",
        text(&exec.stderr)
    );
    let again = k(root, &[], &["pause", "ticker"]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains(&format!("Container {id} is already paused")));

    let frozen_at = count().unwrap();
    assert_eq!(ok(k(root, &[], &["unpause", "ticker"])), "ticker\n");
    wait_for("the counter to move again", || count() > Some(frozen_at));
    let not_paused = k(root, &[], &["unpause", "ticker"]);
    assert!(!not_paused.status.success());
    assert!(text(&not_paused.stderr).contains(&format!("Container {id} is not paused")));
    let inspected: Value = serde_json::from_str(&ok(k(root, &[], &["inspect", "ticker"]))).unwrap();
    assert_eq!(inspected[0]["State"]["Status"], "running");

    // Paused, then stopped: thawed so that it can end.
    ok(k(root, &[], &["pause", "ticker"]));
    ok(k(root, &[], &["stop", "-t", "1", "ticker"]));
    let inspected: Value = serde_json::from_str(&ok(k(root, &[], &["inspect", "ticker"]))).unwrap();
    assert_eq!(inspected[0]["State"]["Status"], "exited");
    assert_eq!(inspected[0]["State"]["Paused"], false);
    ok(k(root, &[], &["rm", "ticker"]));
}

/// `kiln diff`, `rename` and `update` as docker's: the changes a running
/// container made (added, changed, deleted, each changed directory listed
/// before what it holds); a rename that keeps the container and refuses
/// docker's cases in docker's words; an update that reaches the running
/// container's cgroup and the restart policy its monitor follows.
#[test]
fn diff_rename_and_update_as_docker_does() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    let id = ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "one",
            "-m",
            "32m",
            "box:1",
            "sh",
            "-c",
            "mkdir -p /var/x && echo hi > /var/x/added && rm /etc/group && echo more >> /etc/passwd && d=/deep && for i in $(seq 300); do d=$d/a; done && mkdir -p $d && touch /zz-done && exec sleep 1000",
        ],
    ));
    let id = id.trim().to_string();
    wait_for("the changes", || {
        ok(k(root, &[], &["diff", "one"])).contains("A /zz-done")
    });
    let diff = ok(k(root, &[], &["diff", "one"]));
    let lines: Vec<&str> = diff.lines().collect();
    for want in [
        "C /etc",
        "D /etc/group",
        "C /etc/passwd",
        "C /var",
        "A /var/x",
        "A /var/x/added",
        "A /zz-done",
    ] {
        assert!(lines.contains(&want), "{want} not in:\n{diff}");
    }
    let at = |l: &str| lines.iter().position(|x| *x == l).unwrap();
    assert!(
        at("C /etc") < at("D /etc/group") && at("C /var") < at("A /var/x"),
        "{diff}"
    );
    // Nothing the image already had, unchanged, is listed.
    assert!(!diff.contains("/bin"), "{diff}");
    // A deep tree is walked without recursion, to its bottom.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("A /deep") && l.matches("/a").count() == 300),
        "{diff}"
    );

    // rename: the same container under the new name only.
    assert_eq!(ok(k(root, &[], &["rename", "one", "two"])), "");
    let inspected: Value = serde_json::from_str(&ok(k(root, &[], &["inspect", "two"]))).unwrap();
    assert_eq!(inspected[0]["Id"], id.as_str());
    assert_eq!(inspected[0]["Name"], "/two");
    assert!(!k(root, &[], &["inspect", "one"]).status.success());
    let same = k(root, &[], &["rename", "two", "two"]);
    assert!(
        text(&same.stderr).contains("Renaming a container with the same name as its current name"),
        "{}",
        text(&same.stderr)
    );
    ok(k(root, &[], &["run", "--name", "taken", "box:1", "true"]));
    let clash = k(root, &[], &["rename", "two", "taken"]);
    assert!(
        text(&clash.stderr)
            .contains("The container name \"/taken\" is already in use by container"),
        "{}",
        text(&clash.stderr)
    );
    let bad = k(root, &[], &["rename", "two", "bad name!"]);
    assert!(
        text(&bad.stderr).contains("Invalid container name (bad name!)"),
        "{}",
        text(&bad.stderr)
    );

    // update: the live group's limit and the record's policy.
    assert_eq!(
        ok(k(
            root,
            &[],
            &[
                "update",
                "--memory",
                "64m",
                "--memory-swap",
                "64m",
                "--restart",
                "on-failure:3",
                "two"
            ]
        )),
        "two\n"
    );
    let inspected: Value = serde_json::from_str(&ok(k(root, &[], &["inspect", "two"]))).unwrap();
    assert_eq!(inspected[0]["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(
        inspected[0]["HostConfig"]["RestartPolicy"]["Name"],
        "on-failure"
    );
    assert_eq!(
        inspected[0]["HostConfig"]["RestartPolicy"]["MaximumRetryCount"],
        3
    );
    let limit = match crate::util::cgroup_v2() {
        true => crate::util::cgroup_dirs(&[], &format!("kiln/{id}"))[0].join("memory.max"),
        false => crate::util::cgroup_dirs(&["memory"], &format!("kiln/{id}"))[0]
            .join("memory.limit_in_bytes"),
    };
    assert_eq!(
        std::fs::read_to_string(&limit).unwrap().trim(),
        (64u64 << 20).to_string(),
        "{}",
        limit.display()
    );
    let small = k(root, &[], &["update", "--memory", "1m", "two"]);
    assert!(
        text(&small.stderr).contains("Minimum memory limit allowed is 6MB"),
        "{}",
        text(&small.stderr)
    );
    ok(k(root, &[], &["rm", "-f", "two", "taken"]));
}

/// Docker's namespace and runtime options: `--uts host` shares the host's
/// hostname, `--ipc host` its IPC namespace; what kiln cannot do is
/// refused in dockerd's words, and inspect shows what was given.
#[test]
fn host_namespace_and_runtime_options() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = ok(k(
        root,
        &[],
        &["run", "--rm", "--uts", "host", "box:1", "hostname"],
    ));
    assert_eq!(out, host);
    let ipc = ok(k(
        root,
        &[],
        &[
            "run",
            "--rm",
            "--ipc",
            "host",
            "box:1",
            "readlink",
            "/proc/self/ns/ipc",
        ],
    ));
    assert_eq!(
        ipc.trim(),
        std::fs::read_link("/proc/self/ns/ipc")
            .unwrap()
            .to_string_lossy()
    );
    let own = ok(k(
        root,
        &[],
        &["run", "--rm", "box:1", "readlink", "/proc/self/ns/ipc"],
    ));
    assert_ne!(own.trim(), ipc.trim());
    for (flag, value, error) in [
        ("--runtime", "kata", "Unknown runtime specified kata"),
        (
            "--isolation",
            "hyperv",
            "Invalid isolation: \"hyperv\" - linux only supports 'default'",
        ),
        (
            "--device-cgroup-rule",
            "c 7 rwm",
            "invalid device cgroup format 'c 7 rwm'",
        ),
        (
            "--memory-swappiness",
            "101",
            "Invalid value: 101, valid memory swappiness range is 0-100",
        ),
        ("--pid", "host", "--pid host is not supported"),
    ] {
        let o = k(root, &[], &["run", "--rm", flag, value, "box:1", "true"]);
        assert!(!o.status.success());
        assert!(
            text(&o.stderr).contains(error),
            "{flag} {value}: {}",
            text(&o.stderr)
        );
    }
    ok(k(
        root,
        &[],
        &[
            "run",
            "--name",
            "shown",
            "--runtime",
            "runc",
            "--init",
            "--uts",
            "host",
            "--memory-swappiness",
            "40",
            "--device-cgroup-rule",
            "c 7:128 rwm",
            "box:1",
            "true",
        ],
    ));
    let inspected: Value = serde_json::from_str(&ok(k(root, &[], &["inspect", "shown"]))).unwrap();
    let hc = &inspected[0]["HostConfig"];
    assert_eq!(hc["Runtime"], "runc");
    assert_eq!(hc["Init"], true);
    assert_eq!(hc["UTSMode"], "host");
    assert_eq!(hc["MemorySwappiness"], 40);
    assert_eq!(hc["DeviceCgroupRules"], serde_json::json!(["c 7:128 rwm"]));
    assert_eq!(hc["IpcMode"], "private");
}

/// `kiln cp` both ways, running and stopped, as docker's cp: a file and a
/// directory out (owned by the caller), in (owned by the container's
/// root, `-a` keeping the owners), into a volume of a stopped container,
/// a tar on stdout; and a symlink the container made towards the host's
/// files leads to the container's own, whichever way the copy goes.
#[test]
fn cp_copies_both_ways_inside_the_container() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "cpbox",
            "box:1",
            "sh",
            "-c",
            "mkdir -p /data/sub && echo one > /data/a && echo two > /data/sub/b && ln -s /etc /data/hostetc && ln -s ../../.. /data/up && ln -s /data/a /data/named-passwd && cp /bin/busybox /data/suid && chmod 4755 /data/suid && touch /ready && exec sleep 1000",
        ],
    ));
    wait_for("the files", || {
        k(root, &[], &["exec", "cpbox", "test", "-e", "/ready"])
            .status
            .success()
    });
    // Out: a file to a new name, a directory into a directory.
    ok(k(
        root,
        &[],
        &["cp", "cpbox:/data/a", h.join("a-copy").to_str().unwrap()],
    ));
    assert_eq!(std::fs::read_to_string(h.join("a-copy")).unwrap(), "one\n");
    ok(k(root, &[], &["cp", "cpbox:/data", h.to_str().unwrap()]));
    assert_eq!(
        std::fs::read_to_string(h.join("data/sub/b")).unwrap(),
        "two\n"
    );
    assert_eq!(
        std::fs::read_link(h.join("data/hostetc")).unwrap(),
        Path::new("/etc")
    );
    // -L follows the link, but the name on the host is the one typed,
    // never the one the container's link chose.
    let named = h.join("by-link");
    std::fs::create_dir(&named).unwrap();
    ok(k(
        root,
        &[],
        &[
            "cp",
            "-L",
            "cpbox:/data/named-passwd",
            named.to_str().unwrap(),
        ],
    ));
    let got: Vec<_> = std::fs::read_dir(&named)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(got, ["named-passwd"]);
    assert_eq!(
        std::fs::read_to_string(named.join("named-passwd")).unwrap(),
        "one\n"
    );
    // A set-uid file comes out without its bit (owned by the caller).
    ok(k(
        root,
        &[],
        &["cp", "cpbox:/data/suid", h.join("suid").to_str().unwrap()],
    ));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(h.join("suid"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o755);
    // A symlink towards the host's /etc reads the container's.
    let shadow_like = ok(k(root, &[], &["cp", "cpbox:/data/up/etc/passwd", "-"]));
    assert!(
        shadow_like.contains("passwd"),
        "a tar of the container's passwd"
    );
    let theirs = ok(k(root, &[], &["exec", "cpbox", "cat", "/etc/passwd"]));
    assert!(shadow_like.contains(theirs.lines().next().unwrap()));
    // In: a file through a symlink to /etc lands in the container's /etc.
    std::fs::write(h.join("planted"), "planted\n").unwrap();
    ok(k(
        root,
        &[],
        &[
            "cp",
            h.join("planted").to_str().unwrap(),
            "cpbox:/data/hostetc/",
        ],
    ));
    assert!(!Path::new("/etc/planted").exists(), "written on the host");
    assert_eq!(
        ok(k(root, &[], &["exec", "cpbox", "cat", "/etc/planted"])),
        "planted\n"
    );
    assert_eq!(
        ok(k(
            root,
            &[],
            &["exec", "cpbox", "stat", "-c", "%u:%g", "/etc/planted"]
        )),
        "0:0\n"
    );
    // -a keeps the owner.
    std::os::unix::fs::chown(h.join("planted"), Some(1234), Some(4321)).unwrap();
    ok(k(
        root,
        &[],
        &[
            "cp",
            "-a",
            h.join("planted").to_str().unwrap(),
            "cpbox:/data/kept",
        ],
    ));
    assert_eq!(
        ok(k(
            root,
            &[],
            &["exec", "cpbox", "stat", "-c", "%u:%g", "/data/kept"]
        )),
        "1234:4321\n"
    );
    // Missing paths, in docker's words.
    let missing = k(root, &[], &["cp", "cpbox:/nope", h.to_str().unwrap()]);
    assert!(
        text(&missing.stderr).contains("Could not find the file /nope in container cpbox"),
        "{}",
        text(&missing.stderr)
    );
    // Stopped: its own files and a volume's, read and written.
    ok(k(root, &[], &["stop", "-t", "0", "cpbox"]));
    ok(k(
        root,
        &[],
        &[
            "cp",
            "cpbox:/data/sub/b",
            h.join("b-stopped").to_str().unwrap(),
        ],
    ));
    assert_eq!(
        std::fs::read_to_string(h.join("b-stopped")).unwrap(),
        "two\n"
    );
    ok(k(
        root,
        &[],
        &[
            "cp",
            h.join("planted").to_str().unwrap(),
            "cpbox:/data/sub/new",
        ],
    ));
    ok(k(
        root,
        &[],
        &[
            "cp",
            "cpbox:/data/sub/new",
            h.join("new-back").to_str().unwrap(),
        ],
    ));
    assert_eq!(
        std::fs::read_to_string(h.join("new-back")).unwrap(),
        "planted\n"
    );
    ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "withvol",
            "-v",
            "vol1:/vol1",
            "box:1",
            "sh",
            "-c",
            "echo in-volume > /vol1/f",
        ],
    ));
    ok(k(root, &[], &["wait", "withvol"]));
    ok(k(
        root,
        &[],
        &["cp", "withvol:/vol1/f", h.join("vf").to_str().unwrap()],
    ));
    assert_eq!(
        std::fs::read_to_string(h.join("vf")).unwrap(),
        "in-volume\n"
    );
    ok(k(
        root,
        &[],
        &["cp", h.join("planted").to_str().unwrap(), "withvol:/vol1/"],
    ));
    let vols: Value =
        serde_json::from_str(&ok(k(root, &[], &["volume", "inspect", "vol1"]))).unwrap();
    let mountpoint = vols[0]["Mountpoint"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(Path::new(mountpoint).join("planted")).unwrap(),
        "planted\n"
    );
    ok(k(root, &[], &["rm", "-f", "cpbox", "withvol"]));
}

/// An image without a name (a commit or build without one) stays as
/// docker's `<none>:<none>`: listed, found by its id (long, short,
/// `sha256:`), run; `rmi ID` forgets it, and `prune` forgets those no
/// container was made from, keeping the one a container uses.
#[test]
fn images_without_a_name_are_kept_until_pruned() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    ok(k(
        root,
        &[],
        &[
            "run",
            "--name",
            "maker",
            "box:1",
            "sh",
            "-c",
            "echo made > /made",
        ],
    ));
    let id = ok(k(root, &[], &["commit", "maker"])).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    let hex = id.trim_start_matches("sha256:");
    let listed = ok(k(root, &[], &["images"]));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("<none>") && l.contains(&hex[..12])),
        "{listed}"
    );
    for reference in [id.as_str(), hex, &hex[..12]] {
        assert_eq!(
            ok(k(root, &[], &["run", "--rm", reference, "cat", "/made"])),
            "made\n"
        );
    }
    // A second one, used by a container: prune keeps it, forgets the first.
    ok(k(
        root,
        &[],
        &[
            "run",
            "--name",
            "maker2",
            "box:1",
            "sh",
            "-c",
            "echo two > /two",
        ],
    ));
    let used = ok(k(root, &[], &["commit", "maker2"])).trim().to_string();
    ok(k(root, &[], &["run", "--name", "user", &used, "true"]));
    ok(k(root, &[], &["prune"]));
    assert!(
        !k(root, &[], &["inspect", "--type", "image", &id])
            .status
            .success()
    );
    assert!(
        k(root, &[], &["inspect", "--type", "image", &used])
            .status
            .success()
    );
    ok(k(root, &[], &["rm", "user"]));
    let removed = ok(k(root, &[], &["rmi", &used]));
    assert_eq!(removed, format!("Deleted: {used}\n"));
    let listed = ok(k(root, &[], &["images"]));
    assert!(!listed.contains("<none>"), "{listed}");
}

/// `--volumes-from NAME[:ro]`: the other container's volumes and binds at
/// the same places, read-only when asked; a missing container is refused
/// in docker's words, and the volume counts the new user (it cannot be
/// removed under it).
#[test]
fn volumes_from_shares_another_containers_mounts() {
    let Some(store) = box_store() else {
        return;
    };
    let root = store.path();
    let host = tempfile::tempdir().unwrap();
    let bind = format!("{}:/bound", host.path().display());
    ok(k(
        root,
        &[],
        &[
            "run",
            "--name",
            "owner",
            "-v",
            "shared:/shared",
            "-v",
            &bind,
            "box:1",
            "sh",
            "-c",
            "echo from-owner > /shared/f",
        ],
    ));
    std::fs::write(host.path().join("h"), "from-host\n").unwrap();
    let out = ok(k(
        root,
        &[],
        &[
            "run",
            "--rm",
            "--volumes-from",
            "owner",
            "box:1",
            "sh",
            "-c",
            "cat /shared/f /bound/h; echo more > /shared/g && echo wrote",
        ],
    ));
    assert_eq!(out, "from-owner\nfrom-host\nwrote\n");
    let ro = k(
        root,
        &[],
        &[
            "run",
            "--rm",
            "--volumes-from",
            "owner:ro",
            "box:1",
            "sh",
            "-c",
            "cat /shared/g; echo x > /shared/h",
        ],
    );
    assert!(!ro.status.success());
    assert_eq!(text(&ro.stdout), "more\n");
    assert!(
        text(&ro.stderr).contains("Read-only file system"),
        "{}",
        text(&ro.stderr)
    );
    let missing = k(
        root,
        &[],
        &["run", "--rm", "--volumes-from", "nobody", "box:1", "true"],
    );
    assert!(
        text(&missing.stderr).contains("No such container: nobody"),
        "{}",
        text(&missing.stderr)
    );
    ok(k(
        root,
        &[],
        &[
            "run",
            "-d",
            "--name",
            "user",
            "--volumes-from",
            "owner",
            "box:1",
            "sleep",
            "1000",
        ],
    ));
    let inspected: Value = serde_json::from_str(&ok(k(root, &[], &["inspect", "user"]))).unwrap();
    assert_eq!(
        inspected[0]["HostConfig"]["VolumesFrom"],
        serde_json::json!(["owner"])
    );
    ok(k(root, &[], &["rm", "owner"]));
    let busy = k(root, &[], &["volume", "rm", "shared"]);
    assert!(!busy.status.success(), "a volume in use was removed");
    ok(k(root, &[], &["rm", "-f", "user"]));
    ok(k(root, &[], &["volume", "rm", "shared"]));
}
