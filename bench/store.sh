#!/usr/bin/env bash
# Store benchmark (issue 3): import and save of a 1 GiB tree, half random
# bytes and half text, against tar|gzip, tar|pigz -p 2, docker import and
# docker save, all in the same run. Prints the median of RUNS runs, MB/s,
# peak memory, and kiln's ratio to each anchor.
#
#   bench/store.sh            (needs: pigz, gzip, zstd, GNU time; docker optional)
#   SIZE_MB=256 RUNS=3 bench/store.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$here/target/release/kiln}
size_mb=${SIZE_MB:-1024}
runs=${RUNS:-3}
work=${WORK:-$(mktemp -d /var/tmp/kiln-bench.XXXXXX)}
trap 'rm -rf "$work"' EXIT
[ -x "$kiln" ] || (cd "$here" && cargo build --release --locked -q)
for tool in pigz gzip zstd /usr/bin/time; do command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install pigz gzip zstd time)" >&2; exit 1; }; done

echo "making a ${size_mb} MiB tree in $work (half random, half text)..."
python3 - "$work/tree" "$size_mb" <<'PY'
import os, random, sys
root, size_mb = sys.argv[1], int(sys.argv[2])
half = size_mb * (1 << 20) // 2
rng = random.Random(42)
os.makedirs(f"{root}/random"); os.makedirs(f"{root}/text")
chunk = 8 << 20
for i in range(half // chunk):
    with open(f"{root}/random/blob{i:03}.bin", "wb") as f:
        f.write(rng.randbytes(chunk))
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(5000)]
written, n = 0, 0
while written < half:
    buf = bytearray()
    while len(buf) < 256 << 10:
        buf += b" ".join(rng.choice(words) for _ in range(12)) + b".\n"
    d = f"{root}/text/d{n // 100:03}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{n:05}.txt", "wb") as f:
        f.write(buf)
    written += len(buf); n += 1
PY
tar -C "$work/tree" -cf "$work/tree.tar" .
bytes=$(stat -c %s "$work/tree.tar")
mb=$(python3 -c "print($bytes / 1e6)")
echo "tarball: $bytes bytes"

# run NAME CMD...: times CMD RUNS times; prints median seconds and peak RSS.
declare -A secs rss
run() {
  local name=$1; shift
  local times=() peak=0
  for _ in $(seq "$runs"); do
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    local out
    /usr/bin/time -f "%e %M" -o "$work/time.txt" bash -c "$*" >/dev/null 2>"$work/err.txt" || { echo "$name failed:" >&2; cat "$work/err.txt" >&2; exit 1; }
    out=$(tail -1 "$work/time.txt")
    times+=("${out% *}")
    local m=${out#* }; [ "$m" -gt "$peak" ] && peak=$m
  done
  secs[$name]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  rss[$name]=$peak
  printf '%-34s %8.2f s %9.1f MB/s %8d MiB peak\n' "$name" "${secs[$name]}" "$(python3 -c "print($mb / max(${secs[$name]}, 0.001))")" "$((peak / 1024))"
}

root=$work/store
"$kiln" --root "$root" import "$work/tree.tar" bench:warm >/dev/null
echo
echo "== compress the tree (what save costs)"
run "tar | gzip -6"                 "tar -C $work/tree -cf - . | gzip -6 > $work/out.gz"
run "tar | pigz -p 2"               "tar -C $work/tree -cf - . | pigz -p 2 > $work/out.gz"
run "kiln save --compression gzip"  "rm -rf $root/cache/compressed; $kiln --root $root save bench:warm -o $work/k.tar --compression gzip"
run "tar | zstd -3 -T2"             "tar -C $work/tree -cf - . | zstd -q -3 -T2 > $work/out.zst"
run "kiln save --compression zstd"  "rm -rf $root/cache/compressed; $kiln --root $root save bench:warm -o $work/k.tar --compression zstd"
run "kiln save (compressed cached)" "$kiln --root $root save bench:warm -o $work/k.tar --compression zstd"
echo
echo "== import the tarball (layer blob + unpacked snapshot)"
run "kiln import"                   "rm -rf $work/s2; $kiln --root $work/s2 import $work/tree.tar bench:1"
if docker info >/dev/null 2>&1; then
  run "docker import"               "docker rmi -f kiln-bench:1 >/dev/null 2>&1; docker import $work/tree.tar kiln-bench:1"
  run "docker save"                 "docker save kiln-bench:1 -o $work/d.tar"
  run "kiln save --compression none" "$kiln --root $root save bench:warm -o $work/k.tar --compression none"
  docker rmi -f kiln-bench:1 >/dev/null 2>&1 || true
fi
echo
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo "== ratios (time of the anchor / time of kiln: above 1 means kiln is faster)"
echo "kiln save gzip vs tar|pigz -p 2:  $(ratio "${secs["tar | pigz -p 2"]}" "${secs["kiln save --compression gzip"]}")  (goal: at least 0.90)"
echo "kiln save gzip vs tar|gzip -6:    $(ratio "${secs["tar | gzip -6"]}" "${secs["kiln save --compression gzip"]}")"
echo "kiln save zstd vs tar|zstd -T2:   $(ratio "${secs["tar | zstd -3 -T2"]}" "${secs["kiln save --compression zstd"]}")"
if [ -n "${secs["docker import"]:-}" ]; then
  echo "kiln import vs docker import:     $(ratio "${secs["docker import"]}" "${secs["kiln import"]}")"
  echo "kiln save (none) vs docker save:  $(ratio "${secs["docker save"]}" "${secs["kiln save --compression none"]}")"
fi
