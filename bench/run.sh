#!/usr/bin/env bash
# Container start benchmark (issue 4): `kiln run --rm IMAGE true` against
# `runc run` of the same rootfs as a bundle (umoci unpack) and
# `docker run --rm`, all with no network, interleaved, in one run. Prints the
# median wall time of RUNS runs each and kiln's ratios (below 1: kiln faster).
#
#   bench/run.sh            (needs: busybox-static, umoci, runc; docker optional)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$here/target/release/kiln}
runs=${RUNS:-20}
work=$(mktemp -d /var/tmp/kiln-run-bench.XXXXXX)
trap 'rm -rf "$work"; docker rmi -f kiln-bench/box:1 >/dev/null 2>&1 || true' EXIT
[ -x "$kiln" ] || (cd "$here" && cargo build --release --locked -q)
"$here/fixtures/images/busybox-rootfs.sh" "$work/busybox.tar"
"$kiln" --root "$work/store" import "$work/busybox.tar" kiln-bench/box:1 -c 'CMD ["true"]' >/dev/null
umoci unpack --image "$work/store:kiln-bench/box:1" "$work/bundle" >/dev/null
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["true"]; c["process"]["terminal"] = False
json.dump(c, open(p, "w"))
PY
have_docker=0
if docker info >/dev/null 2>&1; then
  "$kiln" --root "$work/store" save kiln-bench/box:1 -o "$work/box.tar" --format docker
  docker load -i "$work/box.tar" >/dev/null && have_docker=1
fi
python3 - "$kiln" "$work" "$runs" "$have_docker" <<'PY'
import statistics, subprocess, sys, time
kiln, work, runs, have_docker = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
cmds = {
    "kiln run --rm --network none": [kiln, "--root", f"{work}/store", "run", "--rm", "--network", "none", "kiln-bench/box:1", "true"],
    "runc run (umoci bundle)": None,
}
if have_docker:
    cmds["docker run --rm --network none"] = ["docker", "run", "--rm", "--network", "none", "kiln-bench/box:1", "true"]
times = {name: [] for name in cmds}
for i in range(runs + 1):
    for name, cmd in cmds.items():
        if cmd is None:
            cmd = ["runc", "run", "--bundle", f"{work}/bundle", f"kiln-bench-{i}"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i > 0:  # the first round warms caches
            times[name].append(time.perf_counter() - start)
med = {name: statistics.median(t) for name, t in times.items()}
for name, m in med.items():
    print(f"{name:<34} median {m*1000:8.1f} ms   min {min(times[name])*1000:8.1f} ms   ({runs} runs)")
k = med["kiln run --rm --network none"]
print(f"kiln / runc:   {k / med['runc run (umoci bundle)']:.2f}  (goal: at most 1.00)")
if have_docker:
    print(f"kiln / docker: {k / med['docker run --rm --network none']:.2f}")
PY
