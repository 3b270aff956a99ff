//! `--isolation=chroot` on this host, against the namespaced build of the
//! same Dockerfile: the same layers, mounts of every kind included, and
//! what chroot cannot give refused with the reason.

use crate::util::{busybox_tar, kiln, need_root, text};
use std::path::Path;
use std::process::Output;

fn k(store: &Path, args: &[&str]) -> Output {
    kiln()
        .arg("--root")
        .arg(store)
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

fn layers(store: &Path, image: &str) -> Vec<String> {
    let out = k(store, &["inspect", image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = v.as_array().map_or(&v, |a| &a[0]);
    v["RootFS"]["Layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no RootFS.Layers in {v}"))
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// A build with a deletion, owners, and cache, bind (context and stage),
/// secret and tmpfs mounts: chroot's layers are the namespaced build's,
/// the cache persists between steps, nothing a mount held is in a layer.
#[test]
fn chroot_builds_the_namespaced_builds_layers() {
    if !need_root("chroot needs root") {
        return;
    }
    let Some(tar) = busybox_tar() else { return };
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("f.txt"), "ctxfile\n").unwrap();
    std::fs::write(ctx.path().join("tok"), "s3cret\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        concat!(
            "FROM box:1 AS s\n",
            "RUN mkdir -p /srcd && echo fromstage > /srcd/x\n",
            "FROM box:1\n",
            "RUN --mount=type=cache,target=/var/cache/k echo run1 >> /var/cache/k/log\n",
            "RUN --mount=type=cache,target=/var/cache/k cat /var/cache/k/log > /seen\n",
            "RUN --mount=type=bind,target=/ctx cat /ctx/f.txt >> /seen && rm /bin/vi && chown 7:7 /seen\n",
            "RUN --mount=type=bind,from=s,source=/srcd,target=/etc cat /etc/x >> /seen\n",
            "RUN --mount=type=secret,id=tok,required=true cat /run/secrets/tok >> /seen\n",
            "RUN --mount=type=tmpfs,target=/tmp touch /tmp/gone && ls /tmp >> /seen\n",
            // A hardlink, a directory removed and made again (opaque), a
            // chmod of the directory holding a mount's existing place.
            "RUN echo a > /hl && ln /hl /hl2 && mkdir -p /opq /home/u/.cache && touch /opq/old\n",
            "RUN rm -rf /opq && mkdir /opq && touch /opq/new\n",
            "RUN --mount=type=cache,target=/home/u/.cache chmod 700 /home/u\n",
        ),
    )
    .unwrap();
    let secret = format!("id=tok,src={}", ctx.path().join("tok").display());
    let mut got = Vec::new();
    for iso in ["namespaces", "chroot"] {
        let store = tempfile::tempdir().unwrap();
        let out = k(store.path(), &["import", tar.to_str().unwrap(), "box:1"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = k(
            store.path(),
            &[
                "build",
                "-q",
                "--isolation",
                iso,
                "--secret",
                &secret,
                "-t",
                "m:1",
                ctx.path().to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{iso}: {}", text(&out.stderr));
        let seen = k(
            store.path(),
            &[
                "run",
                "--rm",
                "m:1",
                "sh",
                "-c",
                "cat /seen; stat -c %u /seen; ls /etc/x /bin/vi /var/cache/k 2>&1",
            ],
        );
        assert_eq!(
            text(&seen.stdout),
            "run1\nctxfile\nfromstage\ns3cret\ngone\n7\nls: /etc/x: No such file or directory\nls: /bin/vi: No such file or directory\nls: /var/cache/k: No such file or directory\n",
            "{iso}: {}",
            text(&seen.stderr)
        );
        got.push(layers(store.path(), "m:1"));
        // What chroot cannot give is refused, naming it.
        if iso == "chroot" {
            let out = kiln()
                .arg("--root")
                .arg(store.path())
                .args(["run", "--rm", "-v", "vol:/data", "m:1", "true"])
                .env("KILN_ISOLATION", "chroot")
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(125));
            assert!(
                text(&out.stderr).contains("at /data cannot be given with --isolation=chroot (no mounts here, and a copy would lose its writes): mount it read-only"),
                "{}",
                text(&out.stderr)
            );
            // The classic way out of a chroot (chroot again below it, then
            // climb) needs CAP_SYS_CHROOT, which the process does not get.
            let out = kiln()
                .arg("--root")
                .arg(store.path())
                .args(["run", "--rm", "m:1", "sh", "-c"])
                .arg("mkdir -p /x && chroot /x /bin/true 2>&1")
                .env("KILN_ISOLATION", "chroot")
                .output()
                .unwrap();
            let said = text(&out.stdout);
            assert!(
                said.contains(
                    "chroot: can't change root directory to '/x': Operation not permitted"
                ),
                "{said}{}",
                text(&out.stderr)
            );
            leftovers_and_swapped_caches(store.path());
        }
    }
    assert_eq!(
        got[0], got[1],
        "chroot's layers differ from the namespaced build's"
    );
    assert_eq!(got[0].len(), 10);
}

/// Processes a step leaves (in a session of their own, or after killing
/// the init) end with the step; a cache the step replaced with a symlink
/// to `/` does not go home as the cache: the next step finds it empty.
fn leftovers_and_swapped_caches(store: &Path) {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        concat!(
            "FROM box:1\n",
            "RUN --mount=type=cache,id=swap,target=/c setsid sleep 7.123 & echo keep > /c/mine && mv /c /moved && ln -s / /c\n",
            "RUN setsid sleep 7.124 & kill -9 $PPID\n",
        ),
    )
    .unwrap();
    let out = kiln()
        .arg("--root")
        .arg(store)
        .args(["build", "-q", "--isolation", "chroot", "-t", "left:1"])
        .arg(ctx.path())
        .output()
        .unwrap();
    // The second step's init was killed: the build fails there.
    assert!(!out.status.success(), "{}", text(&out.stderr));
    let running: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("sleep 7.123") || c.contains("sleep 7.124"))
        .collect();
    assert!(running.is_empty(), "left running: {running:?}");
    let ctx2 = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx2.path().join("Dockerfile"),
        "FROM box:1\nRUN --mount=type=cache,id=swap,target=/c ls -A /c > /seen\n",
    )
    .unwrap();
    let out = kiln()
        .arg("--root")
        .arg(store)
        .args(["build", "-q", "--isolation", "chroot", "-t", "after:1"])
        .arg(ctx2.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = k(store, &["run", "--rm", "after:1", "cat", "/seen"]);
    assert_eq!(
        text(&seen.stdout),
        "",
        "the cache is not empty (the host's / or the old one)"
    );
}
