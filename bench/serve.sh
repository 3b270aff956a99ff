#!/usr/bin/env bash
# kiln serve benchmark (issue 12): a 10-target config warmed from cold into
# a registry cache (Debian's docker-registry on 127.0.0.1), then re-warmed
# with nothing changed (the plan-only path: each job reads its cache ref's
# manifest and config, finds every step key there and ends warm); against
# what a cron script would do by hand in the same run: `kiln build
# --cache-from R --cache-to R,mode=max` for each target, from cold and
# again warm. Then a load: four clients send signed push webhooks and API
# reads for 30 s (a bounded count, they stop by themselves); prints
# requests/s, failures, jobs lost or duplicated, and the service's peak
# RSS.
#
#   bench/serve.sh        (needs root, busybox-static, docker-registry, git)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$here/target/release/kiln}
targets=${TARGETS:-10}
work=$(mktemp -d /var/tmp/kiln-serve-bench.XXXXXX)
trap 'pkill -f "docker-registry serve $work" 2>/dev/null || true; pkill -f "kiln --root $work" 2>/dev/null || true; rm -rf "$work"' EXIT
[ -x "$kiln" ] || (cd "$here" && cargo build --release --locked -q)
"$here/fixtures/images/busybox-rootfs.sh" "$work/busybox.tar"

python3 - "$kiln" "$work" "$targets" <<'PY'
import hashlib, hmac, json, os, socket, statistics, subprocess, sys, threading, time
import urllib.request, urllib.error
kiln, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait_port(p):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", p), timeout=0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {p}")

def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

reg_port = port()
conf = f"{work}/registry.yml"
open(conf, "w").write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {work}/registry\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{reg_port}\n")
registry = subprocess.Popen(["docker-registry", "serve", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wait_port(reg_port)
reg = f"127.0.0.1:{reg_port}"
base = f"{reg}/bench/base:1"
seed = f"{work}/seed"
sh(kiln, "--root", seed, "import", f"{work}/busybox.tar", "box:1")
sh(kiln, "--root", seed, "push", "box:1", base)

# Ten targets, each a small app: a COPY of its sources and three RUNs.
for i in range(n):
    ctx = f"{work}/ctx{i}"
    os.makedirs(f"{ctx}/src")
    for f in range(20):
        open(f"{ctx}/src/f{f}.txt", "w").write(f"target {i} file {f}\n" * 100)
    open(f"{ctx}/Dockerfile", "w").write(
        f"FROM {base}\nCOPY src /src\nRUN cat /src/* | wc -c > /size\n"
        f"RUN mkdir /out && cp /src/f1.txt /out/\nRUN echo {i} > /id\n")

def cache(i, service):
    return f"{reg}/cache/{service}{i}:main"

api = port()
cfg = f'listen = "127.0.0.1:{api}"\ntoken = "t"\nmax_jobs = 2\n'
for i in range(n):
    cfg += f'[[target]]\nname = "t{i}"\ncontext = "{work}/ctx{i}"\ncache_to = "{cache(i, "serve")}"\n'
open(f"{work}/serve.toml", "w").write(cfg)
serve_store = f"{work}/serve-store"
sh(kiln, "--root", serve_store, "import", f"{work}/busybox.tar", "box:1")
served = subprocess.Popen([kiln, "--root", serve_store, "serve", "--config", f"{work}/serve.toml"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wait_port(api)

def call(method, path, body=b"", headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{api}{path}", data=body if method == "POST" else None,
                                 method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")

def warm_all():
    t = time.perf_counter()
    ids = [call("POST", f"/v1/targets/t{i}/warm", headers={"Authorization": "Bearer t"})["id"] for i in range(n)]
    results = []
    for j in ids:
        while True:
            job = call("GET", f"/v1/jobs/{j}")
            if job["status"] not in ("queued", "running"):
                results.append(job); break
            time.sleep(0.05)
    return time.perf_counter() - t, results

cold, jobs = warm_all()
assert all(j["status"] == "built" for j in jobs), jobs
rewarm, jobs = warm_all()
assert all(j["status"] == "warm" for j in jobs), jobs

def by_hand(store):
    t = time.perf_counter()
    for i in range(n):
        sh(kiln, "--root", store, "build", "-q", f"--cache-from=type=registry,ref={cache(i, 'hand')}",
           f"--cache-to=type=registry,ref={cache(i, 'hand')},mode=max", f"{work}/ctx{i}")
    return time.perf_counter() - t

hand_store = f"{work}/hand-store"
sh(kiln, "--root", hand_store, "import", f"{work}/busybox.tar", "box:1")
hand_cold = by_hand(hand_store)
hand_warm = by_hand(hand_store)

print(f"{n} targets, seconds (per target in brackets), max_jobs = 2 for the service")
print(f"{'':34}{'kiln serve':>18}{'kiln build by hand':>22}{'ratio':>8}")
for name, a, b in [("warm from cold", cold, hand_cold), ("re-warm, nothing changed", rewarm, hand_warm)]:
    print(f"{name:34}{a:8.2f} ({a / n:5.3f}){b:12.2f} ({b / n:5.3f}){a / b:8.2f}")

# Load: 30 s, four clients, a bounded count each.
repo = f"{work}/repo"
os.makedirs(repo)
git = ["git", "-C", repo, "-c", "user.name=b", "-c", "user.email=b@b"]
sh(*git, "init", "-q", "-b", "main")
open(f"{repo}/a", "w").write("a\n")
open(f"{repo}/Dockerfile", "w").write(f"FROM {base}\nCOPY a /a\n")
sh(*git, "add", "."); sh(*git, "commit", "-qm", "one")
served.terminate(); served.wait()
open(f"{work}/serve.toml", "a").write(
    f'[[target]]\nname = "hooked"\ngit = "{repo}"\nref = "main"\ntriggers = ["push"]\nwebhook_secret = "s"\n')
served = subprocess.Popen([kiln, "--root", serve_store, "serve", "--config", f"{work}/serve.toml"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wait_port(api)
body = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": repo},
                   "commits": [{"added": [], "modified": ["a"], "removed": []}]}).encode()
sig = "sha256=" + hmac.new(b"s", body, hashlib.sha256).hexdigest()
deadline = time.time() + 30
lock = threading.Lock()
stats = {"ok": 0, "failed": 0, "ids": set()}

def client(c):
    for i in range(20000):
        if time.time() > deadline:
            return
        try:
            k = (c + i) % 4
            if k == 0:
                v = call("POST", "/v1/hooks/github", body, {"X-Hub-Signature-256": sig})
                ids = [q["id"] for q in v["queued"]]
            else:
                call("GET", ["", "/v1/jobs", "/v1/targets/hooked", "/v1/bases"][k]); ids = []
            with lock:
                stats["ok"] += 1; stats["ids"].update(ids)
        except (urllib.error.URLError, OSError):
            with lock:
                stats["failed"] += 1

rss = []
def sample():
    while time.time() < deadline:
        for line in open(f"/proc/{served.pid}/status"):
            if line.startswith("VmRSS:"):
                rss.append(int(line.split()[1]))
        time.sleep(0.5)
t = time.perf_counter()
threads = [threading.Thread(target=client, args=(c,)) for c in range(4)] + [threading.Thread(target=sample)]
for th in threads: th.start()
for th in threads: th.join()
elapsed = time.perf_counter() - t
for j in stats["ids"]:
    while call("GET", f"/v1/jobs/{j}")["status"] in ("queued", "running"):
        time.sleep(0.1)
made = {j["id"] for j in call("GET", "/v1/jobs?target=hooked&limit=10000")}
peak = next(int(l.split()[1]) for l in open(f"/proc/{served.pid}/status") if l.startswith("VmHWM:"))
print(f"load: {stats['ok']} requests in {elapsed:.1f} s = {stats['ok'] / elapsed:.0f}/s, "
      f"{stats['failed']} failed; {len(stats['ids'])} jobs given to webhooks, {len(made)} made "
      f"({'none lost or duplicated' if made == stats['ids'] else 'MISMATCH'}); "
      f"RSS {rss[0] / 1024:.1f} MiB at the start, {rss[-1] / 1024:.1f} MiB at the end, peak {peak / 1024:.1f} MiB")
served.terminate(); served.wait()
registry.terminate()
PY
