#!/usr/bin/env bash
# How reproducible the 22 real-world Dockerfiles are (issue 17): each built
# with SOURCE_DATE_EPOCH and `--verify-repro` (built again in a scratch
# store with no cache, the two images compared) on a debootstrapped
# `debian:local`. Prints, per case, "reproducible" or the first difference,
# then the count.
#
#   bench/realworld-repro.sh [CONFORMANCE_DIR]   (root; debootstrap; the
#                                                 Debian mirror reachable)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$here/target/release/kiln}
cases=${1:-$here/../shared/conformance/realworld}
epoch=${EPOCH:-1700000000}
work=$(mktemp -d /var/tmp/kiln-repro.XXXXXX)
trap 'rm -rf "$work"' EXIT
[ -x "$kiln" ] || (cd "$here" && cargo build --release --locked -q)
tar=$here/target/tmp/debian-bookworm-minbase.tar
[ -f "$tar" ] || { mkdir -p "$(dirname "$tar")"; "$here/fixtures/images/debian-rootfs.sh" "$tar"; }
SOURCE_DATE_EPOCH=$epoch "$kiln" --root "$work/store" import "$tar" debian:local \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' >/dev/null
same=0 total=0
for case in "$cases"/*/; do
  name=$(basename "$case")
  # A checkout of the case, as git would make it (0644, 0755 scripts).
  cp -r "$case" "$work/$name"
  find "$work/$name" -type d -exec chmod 755 {} +
  find "$work/$name" -type f -perm -u+x -exec chmod 755 {} +
  find "$work/$name" -type f ! -perm -u+x -exec chmod 644 {} +
  total=$((total + 1))
  if out=$("$kiln" --root "$work/store" build -q --source-date-epoch "$epoch" --verify-repro \
      --progress quiet "$work/$name" 2>&1); then
    same=$((same + 1))
    echo "$name: reproducible"
  else
    echo "$name: $(printf '%s\n' "$out" | grep -v '^sha256:' | sed 's/^/    /')"
  fi
done
echo "byte-identical: $same of $total"
