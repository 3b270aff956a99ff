#!/usr/bin/env bash
# Network benchmark (issue 14), all of it inside a network namespace made
# here (no bridge or private address in the host's own):
#  - throughput of a 1 GiB transfer to a sink through a published port:
#    kiln's monitor (splice) against a direct loopback copy and docker
#    20.10's userland proxy (a second dockerd started in the namespace,
#    --userland-proxy=true, --iptables=false);
#  - connections per second of small requests (64 bytes echoed), the same
#    three ways;
#  - DNS queries per second to a container's resolver (127.0.0.11) for a
#    container's name, from inside the container's namespace.
# The sink and echo servers (bench/net/peer.py) run in each container's
# network namespace through nsenter, so the servers are the same code
# everywhere. Medians of RUNS runs; ratios to the loopback copy and to
# docker (kiln/docker below 1: kiln faster).
#
#   bench/network.sh     (needs root, busybox-static, python3; docker optional)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$here/target/release/kiln}
runs=${RUNS:-5}
bytes=${BYTES:-1073741824}
work=$(mktemp -d /var/tmp/kiln-network-bench.XXXXXX)
ns=kiln-netbench-$$
peer="python3 $here/bench/net/peer.py"
in_ns() { nsenter --net=/var/run/netns/$ns "$@"; }
k() { in_ns "$kiln" --root "$work/store" "$@"; }
d() { DOCKER_HOST=unix://$work/docker.sock docker "$@"; }
servers=()
cleanup() {
  for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done
  k rm -f kb-sink kb-dns >/dev/null 2>&1 || true
  k network rm benchnet >/dev/null 2>&1 || true
  if [ -f "$work/docker.pid" ]; then
    d rm -f db-sink >/dev/null 2>&1 || true
    kill "$(cat "$work/docker.pid")" 2>/dev/null || true
    sleep 2
  fi
  for p in $(ip netns pids $ns 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  ip netns del $ns 2>/dev/null || true
  umount -R "$work/docker-data" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -x "$kiln" ] || (cd "$here" && cargo build --release --locked -q)
ip netns add $ns
ip -n $ns link set lo up
"$here/fixtures/images/busybox-rootfs.sh" "$work/busybox.tar" >/dev/null
"$kiln" --root "$work/store" import "$work/busybox.tar" kiln-bench/box:1 >/dev/null

# The servers: on the namespace's own loopback (the floor), in a kiln
# container published on 127.0.0.1:19100, in a docker one on 19200.
in_ns $peer serve 19000 >/dev/null 2>&1 &
servers+=($!)
k run -d --name kb-sink -p 127.0.0.1:19100:9000 -p 127.0.0.1:19101:9001 kiln-bench/box:1 sleep 3600 >/dev/null
pid=$(k inspect --type container kb-sink | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["State"]["Pid"])')
nsenter -t "$pid" -n $peer serve 9000 >/dev/null 2>&1 &
servers+=($!)
tools=(loopback kiln)
if command -v docker >/dev/null; then
  # -m: the second dockerd keeps the host's cgroup mounts.
  (in_ns dockerd --data-root "$work/docker-data" --exec-root "$work/docker-exec" \
    -H "unix://$work/docker.sock" --pidfile "$work/docker.pid" \
    --userland-proxy=true --iptables=false --ip6tables=false >"$work/dockerd.log" 2>&1 &)
  for _ in $(seq 1 60); do d info >/dev/null 2>&1 && break; sleep 0.5; done
  if d import "$work/busybox.tar" kiln-bench/box:1 >/dev/null 2>&1 &&
    d run -d --name db-sink -p 127.0.0.1:19200:9000 -p 127.0.0.1:19201:9001 kiln-bench/box:1 sleep 3600 >/dev/null; then
    dpid=$(d inspect -f '{{.State.Pid}}' db-sink)
    nsenter -t "$dpid" -n $peer serve 9000 >/dev/null 2>&1 &
    servers+=($!)
    tools+=(docker)
  else
    echo "docker could not run a published container here: left out" >&2
  fi
fi
sleep 1

# DNS: a container on a network, asked from inside its namespace.
k network create benchnet >/dev/null
k run -d --name kb-dns --network benchnet --network-alias web kiln-bench/box:1 sleep 3600 >/dev/null
dnspid=$(k inspect --type container kb-dns | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["State"]["Pid"])')

python3 - "$runs" "$bytes" "$here/bench/net/peer.py" "$ns" "$dnspid" "${tools[@]}" <<'PY'
import statistics, subprocess, sys
runs, total, peer, ns, dnspid, *tools = sys.argv[1:]
runs, total = int(runs), int(total)
port = {"loopback": 19000, "kiln": 19100, "docker": 19200}
def client(*args, netns=True):
    cmd = ["python3", peer, *args]
    if netns:
        cmd = ["nsenter", f"--net=/var/run/netns/{ns}", *cmd]
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
bulk, conns = {t: [] for t in tools}, {t: [] for t in tools}
for _ in range(runs):
    for t in tools:  # interleaved: the machine's state hits every tool alike
        bulk[t].append(client("bulk", "127.0.0.1", str(port[t]), str(total)))
        conns[t].append(client("conns", "127.0.0.1", str(port[t]), "2000"))
dns = [float(subprocess.run(["nsenter", "-t", dnspid, "-n", "python3", peer, "dns", "127.0.0.11", "web", "20000"],
                            check=True, capture_output=True, text=True).stdout) for _ in range(runs)]
gib = total / (1 << 30)
print(f"{'path':<10} {'1 GiB (s)':>10} {'GiB/s':>7} {'spread':>8} {'conn/s':>8} {'spread':>8}")
med = {}
for t in tools:
    b, c = statistics.median(bulk[t]), statistics.median(conns[t])
    med[t] = (b, c)
    bs = f"{min(bulk[t]):.2f}-{max(bulk[t]):.2f}"
    cs = f"{min(conns[t]):.0f}-{max(conns[t]):.0f}"
    print(f"{t:<10} {b:>10.3f} {gib / b:>7.2f} {bs:>8} {c:>8.0f} {cs:>8}")
b0, c0 = med["loopback"]
print(f"kiln/loopback: time {med['kiln'][0] / b0:.2f}, connections/s {med['kiln'][1] / c0:.2f}")
if "docker" in med:
    print(f"kiln/docker:   time {med['kiln'][0] / med['docker'][0]:.2f}, connections/s {med['kiln'][1] / med['docker'][1]:.2f}")
print(f"DNS from a container: {statistics.median(dns):.0f} queries/s median ({min(dns):.0f}-{max(dns):.0f})")
PY
