#!/usr/bin/env bash
# The four paths of issue 16, each against its anchors and the machine's
# floor, in one run, interleaved:
#   - `COPY . /srv/ctx/` of a 20,000-file, 200 MB context into a cold store;
#   - one RUN writing 2 GiB (1 GiB random, 1 GiB text), build and commit;
#   - `run --rm IMAGE true`;
#   - a rebuild of the 20,000-file context with nothing changed.
# Anchors: docker build (BuildKit, Debian's docker 20.10), buildah bud, runc
# (an umoci bundle). Floors, as rows of their own: a stat walk of the tree
# (find), tar + sha256 of the tree with one synced write of it, the RUN's
# command on the host, and a bare unshare of a container's namespaces.
#
#   bench/paths.sh       (root; busybox-static, dockerd running, buildah,
#                         umoci, runc)
#
# RUNS (default 5) measured runs of each, after one unmeasured run; prints
# medians with the spread ((max - min) / median), kiln's ratio to the best
# anchor, and kiln's peak memory (the largest resident set of kiln and what
# it waited for, from wait4). ONLY=REGEX runs only the matching rows.
# KILN_BEFORE=BINARY adds an earlier kiln to each row, interleaved, with a
# column comparing the two; ANCHORS=0 leaves the anchors and floors out
# (a before/after run of kiln alone).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$here/target/release/kiln}
runs=${RUNS:-5}
docker=/usr/bin/docker
[ -x "$docker" ] || docker=docker
work=$(mktemp -d /var/tmp/kiln-paths-bench.XXXXXX)
cleanup() {
  "$docker" rmi -f localhost/kpaths/box:1 kpaths/out:1 >/dev/null 2>&1 || true
  "$docker" image prune -f >/dev/null 2>&1 || true
  "$docker" builder prune -af >/dev/null 2>&1 || true
  buildah rmi -af >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -x "$kiln" ] || (cd "$here" && cargo build --release --locked -q)
before=${KILN_BEFORE:-}
anchors=${ANCHORS:-1}
if [ "$anchors" != 0 ]; then
  "$docker" info >/dev/null 2>&1 || { echo "dockerd is not running (dockerd --bridge=none --iptables=false &)" >&2; exit 1; }
  for t in buildah umoci runc; do
    command -v $t >/dev/null || { echo "$t is not installed (apt-get install $t)" >&2; exit 1; }
  done
fi

"$here/fixtures/images/busybox-rootfs.sh" "$work/busybox.tar"
"$kiln" --root "$work/store" import "$work/busybox.tar" localhost/kpaths/box:1 -c 'CMD ["true"]' >/dev/null
"$kiln" --root "$work/store" save --format docker --compression none -o "$work/base.tar" localhost/kpaths/box:1
if [ "$anchors" != 0 ]; then
  "$docker" load -i "$work/base.tar" >/dev/null
  buildah pull -q "docker-archive:$work/base.tar" >/dev/null
fi
umoci unpack --image "$work/store:localhost/kpaths/box:1" "$work/bundle" >/dev/null
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["true"]; c["process"]["terminal"] = False
json.dump(c, open(p, "w"))
PY

# The 20,000-file context: 200 directories of 100 files, 1 to 19 KiB each
# (about 200 MB), the same bytes on every run of the benchmark.
mkdir -p "$work/ctx" "$work/big"
python3 - "$work/ctx" <<'PY'
import os, random, sys
root, r = sys.argv[1], random.Random(16)
for d in range(200):
    os.makedirs(f"{root}/d{d}")
    for f in range(100):
        with open(f"{root}/d{d}/f{f}", "wb") as out:
            out.write(r.randbytes(r.randrange(1024, 19 * 1024)))
PY
printf 'FROM localhost/kpaths/box:1\nCOPY . /srv/ctx/\n' >"$work/ctx/Dockerfile"
big_cmd='dd if=/dev/urandom of=$OUT/random bs=1M count=1024 2>/dev/null && yes "a line of text for the layer" | dd of=$OUT/text bs=1M count=1024 iflag=fullblock 2>/dev/null'
printf 'FROM localhost/kpaths/box:1\nRUN OUT=; %s\n' "$big_cmd" >"$work/big/Dockerfile"

# A cold store per kiln run, made before any is timed; all are deleted only
# at the end (ext4 allocates inodes slowly right after a mass deletion, and
# that would be measuring the previous run).
for i in $(seq 0 "$((2 * runs + 3))"); do
  "$kiln" --root "$work/cold$i" load -i "$work/base.tar" >/dev/null
done
rm -f "$work/base.tar"
sync

python3 - "$kiln" "$work" "$runs" "$docker" "$big_cmd" "$before" "$anchors" <<'PY'
import os, re, statistics, subprocess, sys, time
kiln, work, runs, docker, big_cmd = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
before_kiln, anchors = sys.argv[6], sys.argv[7] != "0"
env = dict(os.environ, DOCKER_BUILDKIT="1")
busybox = f"{work}/bundle/rootfs/bin/busybox"

def timed(cmd, shell=False):
    """Wall seconds and peak resident set (KiB) of a command."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace")
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {cmd}\n{err}")
    return elapsed, usage.ru_maxrss

def kiln_build(store, ctx, cold, binary=None):
    return [binary or kiln, "--root", store, "build", "-q", "-t", "kpaths/out:1"] + (["--no-cache"] if cold else []) + [ctx]
def docker_build(ctx, cold):
    return [docker, "build", "--network", "host", "-q", "-t", "kpaths/out:1"] + (["--no-cache"] if cold else []) + [ctx]
def buildah_bud(ctx, cold):
    return ["buildah", "bud", "--layers", "--network", "host", "-q", "-t", "kpaths/out:1"] + (["--no-cache"] if cold else []) + [ctx]
def settle():
    """Deletes the anchors' builds, then waits for ext4 to forget the
    deletions (an inode deleted less than dirty_expire_centisecs ago, 30 s,
    is skipped by the allocator while its table block is cached)."""
    prune()
    subprocess.run(["sync"], check=True)
    time.sleep(35)
def prune():
    if not anchors:
        return
    # The images each `docker build -t` left dangling go too: twelve 2 GiB
    # ones fill a disk.
    subprocess.run([docker, "image", "prune", "-f"], stdout=subprocess.DEVNULL, check=True)
    subprocess.run([docker, "builder", "prune", "-af"], stdout=subprocess.DEVNULL, check=True)
    subprocess.run("buildah rm -a; buildah rmi -f kpaths/out:1", shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

cold_store = iter(f"{work}/cold{i}" for i in range(runs + 1))
cold_before = iter(f"{work}/cold{i}" for i in range(runs + 2, 2 * runs + 4))
# (cold{runs + 1} is left as it is, a copy of which is each RUN row's store)
runc_id = iter(range(10**6))
def big_store():
    """A store of the base alone; the last run's (4 GiB) is deleted first."""
    subprocess.run(["rm", "-rf", f"{work}/bigstore"], check=True)
    subprocess.run(["cp", "-a", f"{work}/cold{runs + 1}", f"{work}/bigstore"], check=True)
    return f"{work}/bigstore"
ctx, big = f"{work}/ctx", f"{work}/big"
os.makedirs(f"{work}/native", exist_ok=True)

# row → [(tool, kind, command or callable, before each run)]; kind is
# "kiln", "anchor" or "floor".
rows = {
    "COPY of a 20,000-file context, cold store": [
        # Each round starts with every tool's state deleted and the disk
        # settled (settle()): no one's run follows a mass deletion, which
        # makes ext4's inode allocation many times slower for a while.
        ("kiln", "kiln", lambda: kiln_build(next(cold_store), ctx, True), settle),
        ("docker build", "anchor", lambda: docker_build(ctx, True), None),
        ("buildah bud", "anchor", lambda: buildah_bud(ctx, True), None),
        ("floor: tar + sha256 + one synced write of the tree", "floor",
         lambda: f"tar -C {ctx} -cf - . | tee {work}/floor.tar | openssl dgst -sha256 && sync {work}/floor.tar && rm {work}/floor.tar", None),
    ],
    "one RUN writing 2 GiB, build and commit": [
        ("kiln", "kiln", lambda: kiln_build(big_store(), big, True), None),
        ("docker build", "anchor", lambda: docker_build(big, True), prune),
        ("buildah bud", "anchor", lambda: buildah_bud(big, True), prune),
        ("floor: the RUN's command on the host", "floor",
         lambda: f"export OUT={work}/native PATH={os.path.dirname(busybox)}:$PATH; {big_cmd}; rm -f {work}/native/*", None),
    ],
    "run --rm IMAGE true": [
        ("kiln", "kiln", lambda: [kiln, "--root", f"{work}/store", "run", "--rm", "--network", "none", "localhost/kpaths/box:1", "true"], None),
        ("runc run (umoci bundle)", "anchor", lambda: ["runc", "run", "--bundle", f"{work}/bundle", f"kpaths-{next(runc_id)}"], None),
        ("floor: unshare of the namespaces", "floor", lambda: ["unshare", "--mount", "--uts", "--ipc", "--pid", "--net", "--fork", "true"], None),
    ],
    "rebuild of the 20,000-file context, no change": [
        ("kiln", "kiln", lambda: kiln_build(f"{work}/store", ctx, False), None),
        ("docker build", "anchor", lambda: docker_build(ctx, False), None),
        ("buildah bud", "anchor", lambda: buildah_bud(ctx, False), None),
        ("floor: stat walk (find)", "floor", lambda: ["find", ctx, "-printf", "%s %T@ %m\\n"], None),
    ],
}
if before_kiln:
    # The earlier kiln runs right after this one, on the same kind of store.
    firsts = {
        "COPY of a 20,000-file context, cold store": lambda: kiln_build(next(cold_before), ctx, True, before_kiln),
        "one RUN writing 2 GiB, build and commit": lambda: kiln_build(big_store(), big, True, before_kiln),
        "run --rm IMAGE true": lambda: [before_kiln, "--root", f"{work}/store", "run", "--rm", "--network", "none", "localhost/kpaths/box:1", "true"],
        "rebuild of the 20,000-file context, no change": lambda: kiln_build(f"{work}/store", ctx, False, before_kiln),
    }
    for row, tools in rows.items():
        # The cold COPY settles the disk before each kiln alike.
        tools.insert(1, ("kiln before", "before", firsts[row], tools[0][3]))
if not anchors:
    for row in rows:
        rows[row] = [t for t in rows[row] if t[1] in ("kiln", "before")]
only = os.environ.get("ONLY")
out = []
for row, tools in rows.items():
    if only and not re.search(only, row):
        continue
    times = {t[0]: [] for t in tools}
    peak = {t[0]: 0 for t in tools}
    for i in range(runs + 1):
        for name, kind, cmd, before in tools:
            if before:
                before()
            c = cmd()
            elapsed, rss = timed(c, shell=isinstance(c, str))
            if i > 0:  # the first round warms caches and makes the cache the rebuild row uses
                times[name].append(elapsed)
                peak[name] = max(peak[name], rss)
    print(f"  done: {row}", file=sys.stderr)
    out.append((row, tools, times, peak))

print(f"median of {runs} runs (spread = (max - min) / median); ratio = kiln / best anchor\n")
print("| path | tool | median | spread | kiln / this | peak memory |")
print("| --- | --- | --- | --- | --- | --- |")
for row, tools, times, peak in out:
    med = {n: statistics.median(v) for n, v in times.items()}
    for name, kind, _, _ in tools:
        v = times[name]
        spread = (max(v) - min(v)) / med[name]
        unit = (lambda s: f"{s * 1000:.1f} ms") if med[name] < 1 else (lambda s: f"{s:.2f} s")
        mem = f"{peak[name] / 1024:.1f} MiB" if kind in ("kiln", "before") else ""
        ratio = "" if kind == "kiln" else f"{med['kiln'] / med[name]:.2f}"
        print(f"| {row} | {name} | {unit(med[name])} | {spread:.0%} | {ratio} | {mem} |")
    anchored = [med[n] for n, kind, _, _ in tools if kind == "anchor"]
    if anchored:
        print(f"| {row} | **kiln / best anchor** | **{med['kiln'] / min(anchored):.2f}** | | | |")
PY
