#!/usr/bin/env bash
# Two-platform build benchmark (issue 29): one Dockerfile with a
# `FROM --platform=$BUILDPLATFORM` stage and a CPU-bound RUN in the target
# stage, built for linux/amd64 and linux/arm64 (arm64 through binfmt_misc's
# qemu-aarch64, as every tool here runs it), cold (a fresh store or
# --no-cache) each run:
#   - kiln --platform linux/amd64,linux/arm64 (one index, platforms side
#     by side, the shared stage once);
#   - kiln, the two platforms one after the other (two builds);
#   - docker build (BuildKit, Debian's docker 20.10), the two platforms one
#     after the other: its docker driver cannot build an index
#     ("multiple platforms feature is currently not supported"), and
#     docker-buildx is not packaged for bookworm.
# Prints medians of RUNS runs and kiln's ratios.
#
#   bench/platforms.sh   (root, busybox-static, busybox-static:arm64 in
#                         target/arm64, qemu-user-static registered, dockerd)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$here/target/release/kiln}
runs=${RUNS:-5}
docker=/usr/bin/docker
work=$(mktemp -d /var/tmp/kiln-platforms-bench.XXXXXX)
cleanup() {
  "$docker" rmi -f kpbench/box-amd64 kpbench/box-arm64 kpbench/out:amd64 kpbench/out:arm64 >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -x "$kiln" ] || (cd "$here" && cargo build --release --locked -q)
"$docker" info >/dev/null 2>&1 || { echo "dockerd is not running (dockerd --bridge=none --iptables=false &)" >&2; exit 1; }
deb=$(ls "$here"/target/arm64/busybox-static_*_arm64.deb 2>/dev/null | head -1)
[ -n "$deb" ] || { echo "needs busybox-static:arm64 in target/arm64 (see .ci/run)" >&2; exit 1; }
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { echo "needs qemu-user-static's qemu-aarch64 handler" >&2; exit 1; }

dpkg-deb -x "$deb" "$work/arm"
"$here/fixtures/images/busybox-rootfs.sh" "$work/amd.tar"
BUSYBOX="$work/arm/bin/busybox" "$here/fixtures/images/busybox-rootfs.sh" "$work/arm.tar" >/dev/null
base="$work/base"
"$kiln" --root "$base" import "$work/amd.tar" kpbench/box-amd64 >/dev/null
"$kiln" --root "$base" import --platform linux/arm64 "$work/arm.tar" kpbench/box-arm64 >/dev/null
for a in amd64 arm64; do
  "$kiln" --root "$base" save --format docker --compression none -o "$work/$a.docker.tar" "kpbench/box-$a"
  "$docker" load -i "$work/$a.docker.tar" >/dev/null
done
mkdir -p "$work/ctx"
cat >"$work/ctx/Dockerfile" <<'DF'
FROM --platform=$BUILDPLATFORM kpbench/box-amd64 AS tools
RUN seq 1 200000 | sha256sum > /tool
FROM kpbench/box-${TARGETARCH}
COPY --from=tools /tool /tool
RUN seq 1 100000 | sha256sum > /sum && seq 1 100000 | md5sum >> /sum
DF

python3 - "$kiln" "$work" "$runs" "$docker" <<'PY'
import os, shutil, statistics, subprocess, sys, time
kiln, work, runs, docker = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = f"{work}/ctx"
env = dict(os.environ, DOCKER_BUILDKIT="1")

def fresh():
    store = f"{work}/store"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(f"{work}/base", store, symlinks=True)
    return store

def timed(cmds):
    t = time.perf_counter()
    for c in cmds:
        subprocess.run(c, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - t

def kiln_index():
    s = fresh()
    return timed([[kiln, "--root", s, "build", "-q", "--platform", "linux/amd64,linux/arm64", "-t", "out:1", ctx]])

def kiln_two():
    s = fresh()
    return timed([[kiln, "--root", s, "build", "-q", "--platform", p, "-t", f"out:{p[6:]}", ctx] for p in ("linux/amd64", "linux/arm64")])

def docker_two():
    return timed([[docker, "build", "--no-cache", "--network", "host", "-q", "--platform", p, "-t", f"kpbench/out:{p[6:]}", ctx] for p in ("linux/amd64", "linux/arm64")])

tools = {"kiln, one index": kiln_index, "kiln, two builds": kiln_two, "docker build, two builds": docker_two}
times = {t: [] for t in tools}
for f in tools.values():
    f()  # warm-up, unmeasured
for _ in range(runs):
    for t, f in tools.items():
        times[t].append(f())
med = {t: statistics.median(v) for t, v in times.items()}
spread = {t: (max(v) - min(v)) / med[t] for t, v in times.items()}
print(f"two platforms (amd64 + arm64 through qemu), cold, median of {runs} runs, seconds\n")
print("| build | median | spread |")
print("| --- | --- | --- |")
for t in tools:
    print(f"| {t} | {med[t]:.2f} | {spread[t]:.0%} |")
print()
print(f"kiln's index / kiln's two builds: {med['kiln, one index'] / med['kiln, two builds']:.2f}")
print(f"kiln's index / docker's two builds: {med['kiln, one index'] / med['docker build, two builds']:.2f}")
PY
