//! The same Dockerfiles built by kiln and by `docker build` (BuildKit):
//! the two images must hold the same files, with the same types, modes,
//! owners, link targets and contents, and the same config.
//!
//! Debian's docker 20.10 carries BuildKit's Dockerfile frontend 1.2 and,
//! offline, cannot pull a newer one: the Dockerfiles keep to what it knows
//! (no heredocs, no symbolic --chmod, no --parents/--exclude).

use crate::util::{busybox_tar, docker_cmd, docker_ready, kiln, need_root, text};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One image's filesystem: path → "type mode uid:gid what".
pub type Tree = BTreeMap<String, String>;

const SINGLE_STAGE: &str = r#"FROM kiln-compat-base:1
ARG V=1
ENV A=a B="b c"
LABEL x=y z="w w"
USER app
WORKDIR /work/dir
USER root
COPY --chown=app:app f.txt ./
COPY --chmod=0750 d/ /home/app/
COPY run.sh /usr/local/bin/
COPY f.txt run.sh /many/
ADD archive.tar /ex/
RUN echo $V > /v && ln -s /v /vlink && mkdir -p /made/sub && chmod 0711 /made && rm -rf /home/app/.keep /bin/vi
RUN echo script > /script.txt && chmod 0604 /script.txt
EXPOSE 80 53/udp
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --retries=2 CMD true
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN true
ENTRYPOINT ["/bin/sh"]
"#;

const MULTI_STAGE: &str = r#"FROM kiln-compat-base:1 AS build
WORKDIR /src
COPY . .
RUN mkdir /out && cat f.txt > /out/a && chmod 0600 /out/a && ln -s a /out/link
FROM kiln-compat-base:1
COPY --from=build /out /dist
COPY --from=build /out/a /single
COPY --from=build --chown=1000:1000 /src/d /owned/
CMD ["cat", "/dist/a"]
"#;

fn context(dir: &Path, dockerfile: &str) {
    use std::os::unix::fs::PermissionsExt;
    let write = |name: &str, body: &str, mode: u32| {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("Dockerfile", dockerfile, 0o644);
    write("f.txt", "file\n", 0o644);
    write("run.sh", "#!/bin/sh\necho run\n", 0o664);
    write("d/one", "1", 0o644);
    write("d/sub/two", "2", 0o600);
    // An archive with an owner and a mode of its own, for ADD to extract.
    let src = dir.join("archive-src");
    std::fs::create_dir_all(src.join("in")).unwrap();
    std::fs::write(src.join("in/x.txt"), "x").unwrap();
    std::os::unix::fs::lchown(src.join("in/x.txt"), Some(1234), Some(5678)).unwrap();
    std::fs::set_permissions(src.join("in/x.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let status = std::process::Command::new("tar")
        .args(["--numeric-owner", "-cf"])
        .arg(dir.join("archive.tar"))
        .arg("-C")
        .arg(&src)
        .arg("in")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(src).unwrap();
    write(".dockerignore", "archive-src\n", 0o644);
}

/// Paths Docker's container export adds or fills itself.
fn docker_made(path: &str) -> bool {
    matches!(
        path,
        "/.dockerenv" | "/etc/hosts" | "/etc/hostname" | "/etc/resolv.conf" | "/etc/mtab"
    ) || ["/dev/", "/proc/", "/sys/"]
        .iter()
        .any(|p| path.starts_with(p))
}

pub fn tree(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = format!("/{}", path.strip_prefix(root).unwrap().display());
            if docker_made(&rel) {
                continue;
            }
            let m = std::fs::symlink_metadata(&path).unwrap();
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if ft.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                if bytes.len() > 64 {
                    // Compared by content, shown short.
                    use sha2::Digest as _;
                    let sum = sha2::Sha256::digest(&bytes);
                    let hex: String = sum.iter().take(8).map(|b| format!("{b:02x}")).collect();
                    format!("{} bytes sha256:{hex}", bytes.len())
                } else {
                    format!("{:?}", String::from_utf8_lossy(&bytes))
                }
            } else {
                String::new()
            };
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "link"
            } else {
                "file"
            };
            let mode = if ft.is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            out.insert(
                rel,
                format!("{kind} {mode:04o} {}:{} {what}", m.uid(), m.gid()),
            );
            if ft.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Tree::new();
    walk(root, root, &mut out);
    out
}

/// The config fields a Dockerfile sets, with "absent", null and empty alike.
pub fn config_fields(config: &Value) -> BTreeMap<&'static str, Value> {
    [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "Labels",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
        "Healthcheck",
        "Shell",
        "OnBuild",
    ]
    .into_iter()
    .map(|k| {
        let v = config.get(k).cloned().unwrap_or(Value::Null);
        let empty = match &v {
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        (k, if empty { Value::Null } else { v })
    })
    .collect()
}

fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("running a command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn kiln_and_docker_build_the_same_images() {
    if !need_root("builds run steps in containers") || !docker_ready() {
        return;
    }
    let Some(tar) = busybox_tar() else { return };
    let store = tempfile::tempdir().unwrap();
    let k = |args: &[&str]| {
        let mut c = kiln();
        c.arg("--root").arg(store.path()).args(args);
        c
    };
    // The same base in both: kiln's import, loaded into docker.
    run(k(&["import", tar.to_str().unwrap(), "kiln-compat-base:1"])
        .args(["--change", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin"]));
    let scratch = tempfile::tempdir().unwrap();
    let base = scratch.path().join("base.tar");
    run(&mut k(&[
        "save",
        "--format",
        "docker",
        "-o",
        base.to_str().unwrap(),
        "kiln-compat-base:1",
    ]));
    run(docker_cmd().args(["load", "-i", base.to_str().unwrap()]));

    let mut differences = Vec::new();
    for (name, dockerfile) in [("single", SINGLE_STAGE), ("multi", MULTI_STAGE)] {
        let ctx = scratch.path().join(format!("ctx-{name}"));
        context(&ctx, dockerfile);
        let tag = format!("kiln-compat-{name}:1");
        run(docker_cmd()
            .env("DOCKER_BUILDKIT", "1")
            .args(["build", "--network", "host", "-q", "-t", &tag])
            .arg(&ctx));
        let kiln_root = scratch.path().join(format!("kiln-{name}"));
        run(k(&["build", "-q", "-t", &tag])
            .arg(format!("--output=type=local,dest={}", kiln_root.display()))
            .arg(&ctx));

        // Docker's image filesystem, from an exported container.
        let docker_root = scratch.path().join(format!("docker-{name}"));
        std::fs::create_dir_all(&docker_root).unwrap();
        let id = run(docker_cmd().args(["create", &tag])).trim().to_string();
        let export = scratch.path().join(format!("docker-{name}.tar"));
        run(docker_cmd().args(["export", "-o", export.to_str().unwrap(), &id]));
        run(docker_cmd().args(["rm", &id]));
        run(std::process::Command::new("tar")
            .args(["--numeric-owner", "-xpf"])
            .arg(&export)
            .arg("-C")
            .arg(&docker_root));

        let (ours, theirs) = (tree(&kiln_root), tree(&docker_root));
        for path in ours
            .keys()
            .chain(theirs.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let (a, b) = (ours.get(path), theirs.get(path));
            if a != b {
                differences.push(format!(
                    "{name}: {path}\n    kiln:   {}\n    docker: {}",
                    a.map_or("(absent)", String::as_str),
                    b.map_or("(absent)", String::as_str)
                ));
            }
        }

        let kiln_cfg: Value = serde_json::from_str(&run(&mut k(&["inspect", &tag]))).unwrap();
        let docker_cfg: Value =
            serde_json::from_str(&run(docker_cmd().args(["image", "inspect", &tag]))).unwrap();
        let (a, b) = (
            config_fields(&kiln_cfg[0]["Config"]),
            config_fields(&docker_cfg[0]["Config"]),
        );
        for (key, value) in &a {
            if b.get(key) != Some(value) {
                differences.push(format!(
                    "{name}: config {key}\n    kiln:   {value}\n    docker: {}",
                    b[key]
                ));
            }
        }
        // History, oldest first, after the base's own entry.
        let ours: Vec<String> = kiln_cfg[0]["History"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|h| h["created_by"].as_str().unwrap_or("").to_string())
            // docker 20.10's COPY entries lack the --chown=/--chmod= that
            // current BuildKit (and kiln) write.
            .map(|l| {
                l.split(' ')
                    .filter(|w| !w.starts_with("--chown=") && !w.starts_with("--chmod="))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let listed =
            run(docker_cmd().args(["history", "--no-trunc", "--format", "{{.CreatedBy}}", &tag]));
        // docker 20.10's BuildKit wrote EXPOSE's ports as a Go map; current
        // BuildKit (kiln's target) writes the list: `EXPOSE [53/udp 80/tcp]`.
        let mut theirs: Vec<String> = listed
            .lines()
            .map(healthcheck_as_buildkit_writes_it)
            .map(|l| match l.strip_prefix("EXPOSE map[") {
                Some(ports) => format!(
                    "EXPOSE [{}]",
                    ports
                        .trim_end_matches(']')
                        .split(' ')
                        .map(|p| p.trim_end_matches(":{}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                None => l.to_string(),
            })
            .collect();
        theirs.reverse();
        theirs.remove(0);
        if ours != theirs {
            differences.push(format!(
                "{name}: history\n    kiln:   {ours:#?}\n    docker: {theirs:#?}"
            ));
        }
        let _ = docker_cmd().args(["rmi", &tag]).output();
    }
    let _ = docker_cmd().args(["rmi", "kiln-compat-base:1"]).output();
    assert!(
        differences.is_empty(),
        "kiln's images differ from docker build's:\n{}",
        differences.join("\n")
    );
}

/// docker 20.10's BuildKit wrote HEALTHCHECK's history as Go's `%q`
/// (`HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" '\x02'}`); current
/// BuildKit (kiln's target) writes `%+v` with StartInterval:
/// `HEALTHCHECK {Test:[CMD-SHELL true] Interval:5s Timeout:0s
/// StartPeriod:0s StartInterval:0s Retries:2}`. Other lines pass unchanged.
fn healthcheck_as_buildkit_writes_it(line: &str) -> String {
    let Some(rest) = line.strip_prefix("HEALTHCHECK &{[") else {
        return line.to_string();
    };
    let Some((list, rest)) = rest.split_once("] ") else {
        return line.to_string();
    };
    let test: Vec<&str> = list.trim_matches('"').split("\" \"").collect();
    let fields: Vec<&str> = rest.trim_end_matches('}').split(' ').collect();
    let [interval, timeout, start, retries] = fields[..] else {
        return line.to_string();
    };
    let retries = match retries.trim_matches('\'') {
        r if r.starts_with("\\x") => u32::from_str_radix(&r[2..], 16).unwrap_or(0),
        r => r.chars().next().map_or(0, |c| c as u32),
    };
    format!(
        "HEALTHCHECK {{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:0s Retries:{retries}}}",
        test.join(" "),
        interval.trim_matches('"'),
        timeout.trim_matches('"'),
        start.trim_matches('"'),
    )
}
