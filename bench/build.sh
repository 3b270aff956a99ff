#!/usr/bin/env bash
# Build benchmark (issue 5): the same Dockerfiles built by kiln, by
# `docker build` (BuildKit, Debian's docker 20.10) and by `buildah bud`, in
# one run, interleaved. Prints the median wall time of RUNS runs of each
# scenario per tool, and kiln's ratio to the faster anchor (below 1: kiln
# is faster).
#
#   bench/build.sh                      (needs root, busybox-static, dockerd
#                                        running, buildah; DEBIAN=0 skips
#                                        the debootstrap + apt-get scenario)
#
# ONLY=REGEX runs only the scenarios whose name matches.
# KILN_BEFORE=PATH adds another kiln binary (an earlier commit's release
# build, its own store) to the same run, and a column comparing the two.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$here/target/release/kiln}
runs=${RUNS:-3}
docker=/usr/bin/docker
[ -x "$docker" ] || docker=docker
work=$(mktemp -d /var/tmp/kiln-build-bench.XXXXXX)
cleanup() {
  "$docker" rmi -f localhost/kbench/box:1 localhost/kbench/debian:1 >/dev/null 2>&1 || true
  "$docker" builder prune -af >/dev/null 2>&1 || true
  buildah rmi -af >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -x "$kiln" ] || (cd "$here" && cargo build --release --locked -q)
"$docker" info >/dev/null 2>&1 || { echo "dockerd is not running (dockerd --bridge=none --iptables=false &)" >&2; exit 1; }
command -v buildah >/dev/null || { echo "buildah is not installed (apt-get install buildah)" >&2; exit 1; }

# One base for all three: kiln imports it, docker and buildah load kiln's
# docker-archive of it.
load_base() { # tar name
  "$kiln" --root "$work/store" import "$1" "$2" \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' >/dev/null
  "$kiln" --root "$work/store" save --format docker --compression none -o "$work/base.tar" "$2"
  "$docker" load -i "$work/base.tar" >/dev/null
  buildah pull -q "docker-archive:$work/base.tar" >/dev/null
  rm -f "$work/base.tar"
}
"$here/fixtures/images/busybox-rootfs.sh" "$work/busybox.tar"
load_base "$work/busybox.tar" localhost/kbench/box:1
if [ "${DEBIAN:-1}" = 1 ]; then
  "$here/fixtures/images/debian-rootfs.sh" "$work/debian.tar"
  load_base "$work/debian.tar" localhost/kbench/debian:1
  rm -f "$work/debian.tar"
fi

# The scenarios' contexts.
ctx=$work/ctx
mkdir -p "$ctx/ten/src" "$ctx/many" "$ctx/big" "$ctx/parallel" "$ctx/apt"
for i in $(seq 1 50); do echo "source $i" >"$ctx/ten/src/f$i.txt"; done
echo "key=value" >"$ctx/ten/config.txt"
echo "main 0" >"$ctx/ten/main.txt"
cat >"$ctx/ten/Dockerfile" <<'EOF'
FROM localhost/kbench/box:1
ENV APP=/app
WORKDIR /app
COPY src/ ./src/
RUN cat src/* > all.txt
COPY config.txt /etc/app.conf
RUN mkdir -p /data && chown 1000 /data
LABEL bench=ten
COPY main.txt .
RUN wc -c all.txt main.txt > sizes
USER 1000
CMD ["cat", "sizes"]
EOF
python3 - "$ctx/many" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(200):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
    for f in range(100):
        with open(f"{root}/d{d}/f{f}.txt", "w") as out:
            out.write(f"file {d}/{f}\n" * 4)
PY
printf 'FROM localhost/kbench/box:1\nCOPY . /ctx\nRUN ls -R /ctx | wc -l > /count\n' >"$ctx/many/Dockerfile"
printf 'FROM localhost/kbench/box:1\nRUN head -c 2147483648 /dev/zero > /big && sync\n' >"$ctx/big/Dockerfile"
cat >"$ctx/parallel/Dockerfile" <<'EOF'
FROM localhost/kbench/box:1 AS a
RUN i=0; while [ $i -lt 1500000 ]; do i=$((i+1)); done; echo $i > /a
FROM localhost/kbench/box:1 AS b
RUN i=0; while [ $i -lt 1500000 ]; do i=$((i+2)); done; echo $i > /b
FROM localhost/kbench/box:1
COPY --from=a /a /a
COPY --from=b /b /b
EOF
cat >"$ctx/apt/Dockerfile" <<'EOF'
FROM localhost/kbench/debian:1
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
EOF

if [ -n "${KILN_BEFORE:-}" ]; then
  for base in localhost/kbench/box:1 localhost/kbench/debian:1; do
    "$kiln" --root "$work/store" save --compression none -o "$work/base.tar" "$base" 2>/dev/null || continue
    "$KILN_BEFORE" --root "$work/store-before" load -i "$work/base.tar" >/dev/null
    rm -f "$work/base.tar"
  done
fi

python3 - "$kiln" "$work" "$runs" "$docker" "${DEBIAN:-1}" "${KILN_BEFORE:-}" <<'PY'
import statistics, subprocess, sys, time
kiln, work, runs, docker, debian = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
kiln_before = sys.argv[6]
ctx = f"{work}/ctx"
tools = {
    "kiln": lambda c, cold: [kiln, "--root", f"{work}/store", "build", "-q", "-t", "kbench/out:1"] + (["--no-cache"] if cold else []) + [c],
    "docker build": lambda c, cold: [docker, "build", "--network", "host", "-q", "-t", "kbench/out:1"] + (["--no-cache"] if cold else []) + [c],
    "buildah bud": lambda c, cold: ["buildah", "bud", "--layers", "--network", "host", "-q", "-t", "kbench/out:1"] + (["--no-cache"] if cold else []) + [c],
}
if kiln_before:
    tools["kiln before"] = lambda c, cold: [kiln_before, "--root", f"{work}/store-before", "build", "-q", "-t", "kbench/out:1"] + (["--no-cache"] if cold else []) + [c]
env = dict(__import__("os").environ, DOCKER_BUILDKIT="1")

def run(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - t

counter = [0]
def touch_main():
    counter[0] += 1
    with open(f"{ctx}/ten/main.txt", "w") as f:
        f.write(f"main {counter[0]}\n")

# (name, context, cold, before each run)
scenarios = [
    ("10 steps, cold", "ten", True, None),
    ("10 steps, no change", "ten", False, None),
    ("10 steps, one COPY'd file changed", "ten", False, touch_main),
    ("20,000-file context, cold", "many", True, None),
    ("20,000-file context, no change", "many", False, None),
    ("a step writing 2 GiB", "big", True, None),
    ("two CPU-bound stages", "parallel", True, None),
]
if debian:
    scenarios.append(("debian + apt-get install curl", "apt", True, None))
only = __import__("os").environ.get("ONLY")
if only:
    scenarios = [s for s in scenarios if __import__("re").search(only, s[0])]

rows = []
for name, sub, cold, before in scenarios:
    times = {t: [] for t in tools}
    # One unmeasured build each warms caches (and, for the cached
    # scenarios, makes the cache being measured).
    for tool, cmd in tools.items():
        run(cmd(f"{ctx}/{sub}", cold))
    for _ in range(runs):
        for tool, cmd in tools.items():
            if before:
                before()
            times[tool].append(run(cmd(f"{ctx}/{sub}", cold)))
    med = {t: statistics.median(v) for t, v in times.items()}
    best_anchor = min(med["docker build"], med["buildah bud"])
    rows.append((name, med, med["kiln"] / best_anchor, med["kiln"] / med["docker build"]))
    print(f"  done: {name}", file=sys.stderr)

print(f"median of {runs} runs, seconds; ratio = kiln / faster anchor (below 1: kiln faster)\n")
extra = " kiln before | kiln / kiln before |" if kiln_before else ""
print(f"| scenario | kiln | docker build | buildah bud | kiln / faster anchor | kiln / docker build |{extra}")
print(f"| --- | --- | --- | --- | --- | --- |{' --- | --- |' if kiln_before else ''}")
for name, med, ratio, vs_docker in rows:
    cols = f" {med['kiln before']:.2f} | {med['kiln'] / med['kiln before']:.2f} |" if kiln_before else ""
    print(f"| {name} | {med['kiln']:.2f} | {med['docker build']:.2f} | {med['buildah bud']:.2f} | {ratio:.2f} | {vs_docker:.2f} |{cols}")
PY
