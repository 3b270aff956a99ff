#!/usr/bin/env bash
# Docker API load (issue 15): 200 concurrent clients, each in a loop of
# GET /containers/json?all=1 and GET /images/json on the unix socket for
# SECONDS, against kiln's `system service` and docker 20.10's own dockerd
# in the same run (the same image loaded into both, five containers
# created in each). Prints requests, errors and latency percentiles.
#
#   bench/api.sh     (needs root, busybox-static, python3; dockerd running)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$here/target/release/kiln}
seconds=${SECONDS_EACH:-20}
work=$(mktemp -d /var/tmp/kiln-api-bench.XXXXXX)
svc=
cleanup() {
  [ -n "$svc" ] && kill "$svc" 2>/dev/null || true
  docker rm -f $(docker ps -aq --filter label=kiln-api-bench) >/dev/null 2>&1 || true
  docker rmi kiln-api-bench/box:1 >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -x "$kiln" ] || (cd "$here" && cargo build --release --locked -q)
"$here/fixtures/images/busybox-rootfs.sh" "$work/busybox.tar" >/dev/null
"$kiln" --root "$work/store" import "$work/busybox.tar" kiln-api-bench/box:1 >/dev/null
"$kiln" --root "$work/store" save kiln-api-bench/box:1 -o "$work/box.tar" --format docker
docker load -i "$work/box.tar" >/dev/null
"$kiln" --root "$work/store" system service --socket "$work/kiln.sock" --timeout 0 &
svc=$!
for _ in $(seq 1 100); do [ -S "$work/kiln.sock" ] && break; sleep 0.05; done
python3 - "$work/kiln.sock" /var/run/docker.sock "$seconds" <<'PY'
import json, socket, statistics, sys, threading, time

def request(path, method="GET", body=b""):
    def go(sock_path):
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock_path)
        s.sendall(f"{method} {path} HTTP/1.0\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        return int(data.split(b" ", 2)[1]), data
    return go

kiln, dockerd, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
create = json.dumps({"Image": "kiln-api-bench/box:1", "Cmd": ["true"],
                     "Labels": {"kiln-api-bench": "1"}, "HostConfig": {"NetworkMode": "none"}}).encode()
for sock in (kiln, dockerd):
    for _ in range(5):
        status, _ = request("/v1.41/containers/create", "POST", create)(sock)
        assert status == 201, status

def load(sock):
    lat, errors = [], [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds
    def client(i):
        paths = ["/v1.41/containers/json?all=1", "/v1.41/images/json"]
        n = i
        while time.monotonic() < end:
            t = time.perf_counter()
            try:
                status, _ = request(paths[n % 2])(sock)
            except OSError:
                status = 0
            d = time.perf_counter() - t
            with lock:
                lat.append(d)
                if status != 200:
                    errors[0] += 1
            n += 1
    threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
    for t in threads: t.start()
    for t in threads: t.join()
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    return len(lat), errors[0], q(0.5), q(0.9), q(0.99)

print(f"{'server':<8} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
results = {}
for name, sock in (("kiln", kiln), ("dockerd", dockerd)):
    n, e, p50, p90, p99 = load(sock)
    results[name] = (n, p50)
    print(f"{name:<8} {n:>9} {e:>7} {p50:>8.1f} {p90:>8.1f} {p99:>8.1f}")
print(f"kiln/dockerd: requests {results['kiln'][0] / results['dockerd'][0]:.2f}, p50 {results['kiln'][1] / results['dockerd'][1]:.2f}")
PY
