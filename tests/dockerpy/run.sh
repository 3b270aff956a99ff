#!/usr/bin/env bash
# Runs docker-py's own integration suite (the version Debian's python3-docker
# is, from its PyPI source archive) against an engine: kiln's Docker API
# service, or dockerd for the comparison. Everything runs inside a network
# namespace this script makes (the suite creates bridges, some on public
# subnets): entered with nsenter, and deleted at the end with what ran there.
#
#   tests/dockerpy/run.sh SUITE_DIR OUT_DIR [kiln BINARY BUSYBOX_TAR | dockerd]
#
# SUITE_DIR holds docker-<version>/tests (the sdist unpacked); OUT_DIR gets
# junit.xml and the engine's log. The test base (busybox) is tagged as every
# image the suite names.
set -euo pipefail
suite=$1 out=$2 engine=$3
mkdir -p "$out"
ns="kiln-dpy-$$"
work=$(mktemp -d)
cleanup() {
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  # dockerd's own mounts and state, when it was the engine.
  if [ -d "$work/docker" ]; then umount -R "$work/docker" 2>/dev/null || true; fi
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
enter() { nsenter --net="/run/netns/$ns" -- "$@"; }
sock="$work/engine.sock"
case "$engine" in
  kiln)
    kiln=$4 tar=$5
    "$kiln" --root "$work/store" import "$tar" busybox:latest \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["sh"]' >/dev/null
    for name in alpine:3.10 alpine:latest busybox:buildroot-2014.02 hello-world:latest; do
      "$kiln" --root "$work/store" tag busybox:latest "$name"
    done
    enter "$kiln" --root "$work/store" system service --timeout 0 --bridge none --socket "$sock" \
      >"$out/engine.log" 2>&1 &
    ;;
  dockerd)
    enter dockerd --data-root "$work/docker" --exec-root "$work/exec" \
      --pidfile "$work/dockerd.pid" -H "unix://$sock" --bridge=none \
      --iptables=false --ip6tables=false >"$out/engine.log" 2>&1 &
    ;;
  *) echo "unknown engine $engine" >&2; exit 2 ;;
esac
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "the engine did not listen:" >&2; tail "$out/engine.log" >&2; exit 1; }
export DOCKER_HOST="unix://$sock"
if [ "$engine" = dockerd ]; then
  # The same base as kiln's, loaded and tagged the same way.
  docker load -i "${BUSYBOX_TAR:?BUSYBOX_TAR names the test base for dockerd}" >/dev/null
  for name in alpine:3.10 alpine:latest busybox:buildroot-2014.02 hello-world:latest; do
    docker tag busybox:latest "$name"
  done
fi
files=(${KILN_DOCKERPY_FILES:-api_build_test.py api_client_test.py api_container_test.py api_exec_test.py
  api_healthcheck_test.py api_image_test.py api_network_test.py api_volume_test.py
  client_test.py context_api_test.py errors_test.py models_containers_test.py
  models_images_test.py models_networks_test.py models_resources_test.py
  models_volumes_test.py regression_test.py})
cd "$suite"
status=0
# A test that hangs must not hang the run: the whole suite is bounded.
# docker-py 5.0.3 makes every warning an error, and setuptools' distutils
# warns on each LooseVersion: the standard library's distutils does not.
# docker-py keeps contexts beside the config file it finds, and with none in
# the current directory: a config of this run's own keeps them out of SUITE.
mkdir -p "$work/.docker" && echo '{}' >"$work/.docker/config.json"
enter env DOCKER_HOST="$DOCKER_HOST" HOME="$work" DOCKER_CONFIG="$work/.docker" SETUPTOOLS_USE_DISTUTILS=stdlib timeout 1800 /usr/bin/python3 -m pytest \
  -p no:cacheprovider -q -o junit_family=xunit1 --junitxml="$out/junit.xml" \
  "${files[@]/#/tests/integration/}" >"$out/pytest.log" 2>&1 || status=$?
tail -3 "$out/pytest.log"
# pytest's own status is 1 when a test failed: the caller judges the
# outcomes from junit.xml; a missing report (pytest could not run) fails.
[ -s "$out/junit.xml" ] || { echo "pytest wrote no report (status $status)" >&2; exit 1; }
