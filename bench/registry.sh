#!/usr/bin/env bash
# Registry benchmark (issue 6): push and pull of a ~500 MB, 5-layer image
# to Debian's docker-registry on 127.0.0.1, kiln against `skopeo copy` in
# the same run, interleaved, each run against a fresh registry. Both
# compress with gzip on push (kiln's cache of compressed layers and
# skopeo's blob-info cache are emptied before each run). A pull fetches and
# verifies the blobs (kiln unpacks layers when they are first used).
# Prints medians and kiln's ratios.
#
#   bench/registry.sh        (needs root, busybox-static, docker-registry, skopeo)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$here/target/release/kiln}
runs=${RUNS:-3}
mb=${LAYER_MB:-100}
work=$(mktemp -d /var/tmp/kiln-registry-bench.XXXXXX)
trap 'pkill -f "docker-registry serve $work" 2>/dev/null || true; rm -rf "$work"' EXIT
[ -x "$kiln" ] || (cd "$here" && cargo build --release --locked -q)
"$here/fixtures/images/busybox-rootfs.sh" "$work/busybox.tar"
store=$work/store
"$kiln" --root "$store" import "$work/busybox.tar" bench/base:1 >/dev/null
mkdir -p "$work/ctx"
{
  echo "FROM bench/base:1"
  for i in 1 2 3 4 5; do
    # Half random, half text: a layer compresses as real ones do.
    echo "RUN head -c $((mb / 2))m /dev/urandom > /r$i && seq 1 $((mb * 60000)) | head -c $((mb / 2))m > /t$i"
  done
} >"$work/ctx/Dockerfile"
"$kiln" --root "$store" build -q -t bench/big:1 "$work/ctx" >/dev/null

python3 - "$kiln" "$work" "$runs" "$mb" <<'PY'
import os, shutil, socket, statistics, subprocess, sys, time
kiln, work, runs, mb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = f"{work}/store"

def start_registry(n):
    # A fresh registry for every run: nothing to skip or mount from.
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    conf = f"{work}/registry{n}.yml"
    with open(conf, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {work}/registry{n}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"127.0.0.1:{port}"

def run(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t

def forget_compressed():
    shutil.rmtree(f"{store}/cache/compressed", ignore_errors=True)

times = {k: [] for k in ["kiln push", "skopeo copy (push)", "kiln pull", "skopeo copy (pull)"]}
for i in range(runs):
    proc, reg = start_registry(i)
    # skopeo remembers compressed digests between runs; start it fresh too.
    for cache in ["/var/lib/containers/cache/blob-info-cache-v1.sqlite", "/var/lib/containers/cache/blob-info-cache-v1.boltdb"]:
        if os.path.exists(cache):
            os.remove(cache)
    forget_compressed()
    times["kiln push"].append(run([kiln, "--root", store, "push", "-q", "bench/big:1", f"{reg}/kiln{i}/big:1"]))
    times["skopeo copy (push)"].append(run(["skopeo", "copy", "-q", "--dest-tls-verify=false", "--dest-compress",
        f"oci:{store}:bench/big:1", f"docker://{reg}/skopeo{i}/big:1"]))
    fresh = f"{work}/pull{i}"
    times["kiln pull"].append(run([kiln, "--root", fresh, "pull", "-q", f"{reg}/kiln{i}/big:1"]))
    times["skopeo copy (pull)"].append(run(["skopeo", "copy", "-q", "--src-tls-verify=false",
        f"docker://{reg}/skopeo{i}/big:1", f"oci:{work}/skopeo-pull{i}:big"]))
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.rmtree(f"{work}/skopeo-pull{i}", ignore_errors=True)
    proc.terminate(); proc.wait()
    shutil.rmtree(f"{work}/registry{i}", ignore_errors=True)
med = {k: statistics.median(v) for k, v in times.items()}
print(f"image: 5 layers of {mb} MB (half random, half text); a fresh registry per run; median of {runs} runs, seconds\n")
print("| operation | kiln | skopeo copy | kiln / skopeo |")
print("| --- | --- | --- | --- |")
print(f"| push (gzip on the way) | {med['kiln push']:.2f} | {med['skopeo copy (push)']:.2f} | {med['kiln push'] / med['skopeo copy (push)']:.2f} |")
print(f"| pull (blobs fetched and verified) | {med['kiln pull']:.2f} | {med['skopeo copy (pull)']:.2f} | {med['kiln pull'] / med['skopeo copy (pull)']:.2f} |")
PY
