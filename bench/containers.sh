#!/usr/bin/env bash
# Container lifecycle benchmark (issue 13): `run -d` until the container
# runs, `exec true` in a running container, `stop` of a process that
# handles SIGTERM, and `ps` with 20 containers running; kiln against
# docker (and podman when installed), interleaved in one run, no network.
# Prints medians of RUNS runs and kiln's ratios (below 1: kiln faster).
#
#   bench/containers.sh     (needs root, busybox-static; docker and podman optional)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$here/target/release/kiln}
runs=${RUNS:-10}
work=$(mktemp -d /var/tmp/kiln-containers-bench.XXXXXX)
cleanup() {
  "$kiln" --root "$work/store" rm -f $("$kiln" --root "$work/store" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
  docker rm -f $(docker ps -aq --filter label=kiln-bench) >/dev/null 2>&1 || true
  docker rmi -f kiln-bench/box:1 >/dev/null 2>&1 || true
  if command -v podman >/dev/null; then
    podman rm -f $(podman ps -aq --filter label=kiln-bench) >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
[ -x "$kiln" ] || (cd "$here" && cargo build --release --locked -q)
"$here/fixtures/images/busybox-rootfs.sh" "$work/busybox.tar"
"$kiln" --root "$work/store" import "$work/busybox.tar" kiln-bench/box:1 >/dev/null
"$kiln" --root "$work/store" save kiln-bench/box:1 -o "$work/box.tar" --format docker
tools=(kiln)
if docker info >/dev/null 2>&1 && docker load -i "$work/box.tar" >/dev/null; then tools+=(docker); fi
# Podman's default nofile limit (1048576) is above what a machine without
# CAP_SYS_RESOURCE may set: it is given 1024, as docker's containers get.
if command -v podman >/dev/null && podman load -i "$work/box.tar" >/dev/null 2>&1; then
  if podman run --rm --network none --ulimit nofile=1024:1024 localhost/kiln-bench/box:1 true >/dev/null 2>&1; then
    tools+=(podman)
  else
    echo "podman cannot run containers on this machine: left out" >&2
  fi
fi

python3 - "$kiln" "$work" "$runs" "${tools[@]}" <<'PY'
import statistics, subprocess, sys, time
kiln, work, runs, tools = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
base = {
    "kiln": [kiln, "--root", f"{work}/store"],
    "docker": ["docker"],
    "podman": ["podman"],
}
image = {"kiln": "kiln-bench/box:1", "docker": "kiln-bench/box:1", "podman": "localhost/kiln-bench/box:1"}
# kiln's containers share the host's network unless told; docker and
# podman are given none, so nothing builds a bridge for them either.
net = {"kiln": ["--network", "none"], "docker": ["--network", "none"],
       "podman": ["--network", "none", "--ulimit", "nofile=1024:1024"]}

def sh(cmd):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout.decode().strip()

def timed(cmd):
    t = time.perf_counter()
    out = sh(cmd)
    return time.perf_counter() - t, out

def run_d(tool, *cmd):
    return timed(base[tool] + ["run", "-d", "--label", "kiln-bench=1"] + net[tool] + [image[tool], *cmd])

def rm(tool, ids):
    if ids:
        sh(base[tool] + ["rm", "-f", *ids])

rows = {}
def add(name, tool, secs):
    rows.setdefault(name, {}).setdefault(tool, []).append(secs)

for i in range(runs):
    for tool in tools:
        t, cid = run_d(tool, "sleep", "1000")
        add("run -d (until it runs)", tool, t)
        t, _ = timed(base[tool] + ["exec", cid, "true"])
        add("exec true", tool, t)
        rm(tool, [cid])
        _, cid = run_d(tool, "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
        time.sleep(0.3)
        t, _ = timed(base[tool] + ["stop", cid])
        add("stop (the process handles SIGTERM)", tool, t)
        rm(tool, [cid])

for tool in tools:
    ids = [run_d(tool, "sleep", "1000")[1] for _ in range(20)]
    for i in range(runs):
        t, out = timed(base[tool] + ["ps", "-q"])
        assert len(out.split()) >= 20, out
        add("ps with 20 running", tool, t)
    rm(tool, ids)

others = [t for t in tools if t != "kiln"]
head = f"{'':40}" + "".join(f"{t:>12}" for t in tools) + "".join(f"{'kiln/' + t:>14}" for t in others)
print(f"median of {runs} runs, milliseconds")
print(head)
for name, by in rows.items():
    med = {t: statistics.median(v) * 1000 for t, v in by.items()}
    line = f"{name:40}" + "".join(f"{med[t]:12.1f}" for t in tools)
    line += "".join(f"{med['kiln'] / med[t]:14.2f}" for t in others)
    print(line)
PY
