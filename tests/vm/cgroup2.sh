# Run inside the VM of tests/vm/run.sh (cgroup v2 only): each section's
# output is what tests/kiln/vm.rs compares. A container's stdout and stderr
# reach here through two pipes, in no fixed order: where a section's lines
# come from both, the container's shell joins them first (2>&1 inside).
k() { kiln --root /var/lib/kiln "$@"; }
k import /test/base.tar box:1 >/dev/null
echo "=== run"
k run --rm box:1 echo hello
echo "=== own cgroup, read-only"
k run --rm -m 64m --cpus 0.5 --pids-limit 30 box:1 sh -c 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max; { echo 1 > /sys/fs/cgroup/memory.max; } 2>&1 || echo refused'
echo "=== cgroup namespace"
k run --rm -m 64m box:1 cat /proc/self/cgroup
k run --rm -m 64m --cgroupns host box:1 cat /proc/self/cgroup | sed 's|/kiln/[0-9a-f]*$|/kiln/ID|'
echo "=== oom"
k run --rm -m 32m box:1 sh -c 'a=$(head -c 100000000 /dev/zero | tr "\0" x); echo survived' >/dev/null 2>&1
echo "exit $?"
echo "=== swap"
k run --rm -m 32m --memory-swap 64m box:1 cat /sys/fs/cgroup/memory.swap.max
echo "=== pids"
k run --rm --pids-limit 10 box:1 sh -c '{ cat /sys/fs/cgroup/pids.max; for i in $(seq 30); do sleep 5 & done; echo spawned; } 2>&1' 2>&1 | sed "s/: Resource temporarily unavailable//"
echo "=== detached, exec, update, stats, commit"
k run -d --name web -m 64m box:1 sh -c 'echo up > /tmp/state; exec sleep 300' >/dev/null
k exec web cat /tmp/state /proc/self/cgroup
k update -m 96m web >/dev/null
k exec web cat /sys/fs/cgroup/memory.max
k stats --no-stream web | tail -1 | awk '{print $2, $6}'
k commit web snap:1 >/dev/null && k run --rm snap:1 cat /tmp/state
echo "thawed after: $(cat /sys/fs/cgroup/kiln/*/cgroup.freeze | sort -u)"
k stop -t 1 web >/dev/null && k rm web >/dev/null
echo "=== groups reclaimed"
find /sys/fs/cgroup/kiln -mindepth 1 -type d | wc -l
echo "=== device nodes"
k run --rm box:1 sh -c 'mknod /n c 1 5 && head -c1 /n >/dev/null 2>&1 && echo opened || echo refused'
echo "=== device program"
# --device binds the node without nodev; its access is the group's BPF
# program's to allow. The mount would let the node be written even when
# bound read-only (a device is not the filesystem it sits on): only the
# program refuses the write it was not given. Written, not read: reading
# /dev/kmsg needs CAP_SYSLOG besides.
kmsg='{ echo kiln > /dev/kmsg; } 2>&1 && echo written'
k run --rm --device /dev/kmsg:/dev/kmsg:r box:1 sh -c "$kmsg"
k run --rm --device /dev/kmsg:/dev/kmsg:r --device-cgroup-rule 'c 1:11 w' box:1 sh -c "$kmsg"
k run --rm --device /dev/kmsg:/dev/kmsg:rw box:1 sh -c "$kmsg"
k run --rm -m 64m box:1 sh -c 'echo x > /dev/null && head -c3 /dev/zero | wc -c'
echo "=== build"
mkdir -p /tmp/ctx && printf 'FROM box:1\nRUN echo built > /b\nRUN cat /proc/self/cgroup /sys/fs/cgroup/memory.max > /cg; ls /sys/fs/cgroup/kiln >/dev/null 2>&1 || echo alone >> /cg\nCMD ["cat", "/b", "/cg"]\n' > /tmp/ctx/Dockerfile
# Built from a group of its own, as a CI job's: a step that stayed in
# kiln's group would say 0::/job.
mkdir /sys/fs/cgroup/job
(echo $$ > /sys/fs/cgroup/job/cgroup.procs && k build -q -t b:1 /tmp/ctx >/dev/null) && k run --rm b:1
echo "steps' groups left: $(find /sys/fs/cgroup/kiln -mindepth 1 -type d | wc -l)"
echo "=== read-only cgroups"
# As in a CI job's container: a step's own group cannot be made, and the
# step runs in kiln's instead of failing.
mount -o remount,ro /sys/fs/cgroup
printf 'FROM box:1\nRUN echo ran > /r\n' > /tmp/ctx/Dockerfile
k build -q --no-cache -t b:2 /tmp/ctx >/dev/null && echo built
mount -o remount,rw /sys/fs/cgroup
echo "=== rootless, delegated"
# A user (one id mapped: no newuidmap here) whose shell runs in a subtree
# delegated to it, as systemd's user@UID.service is.
echo 'u:x:1000:1000::/tmp/u:/bin/sh' >> /etc/passwd && echo 'u:x:1000:' >> /etc/group
mkdir -p /tmp/u && cp /test/base.tar /tmp/u/ && chown -R 1000:1000 /tmp/u
as_u() { sh -c 'echo $$ > "$1"/cgroup.procs; exec su u -s /bin/sh -c "$0"' "$1" "$2"; }
mkdir -p /sys/fs/cgroup/user/shell /sys/fs/cgroup/alone
as_u 'kiln --root /tmp/u/store import /tmp/u/base.tar box:1 >/dev/null' /sys/fs/cgroup/alone
as_u 'kiln --root /tmp/u/store run --rm -m 64m box:1 true 2>/dev/null; echo "not delegated: exit $?"' /sys/fs/cgroup/alone
for f in . cgroup.procs cgroup.subtree_control cgroup.threads shell shell/cgroup.procs shell/cgroup.subtree_control shell/cgroup.threads; do chown 1000:1000 /sys/fs/cgroup/user/$f; done
as_u 'kiln --root /tmp/u/store run --rm -m 64m --pids-limit 20 box:1 sh -c "id -u; cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /proc/self/cgroup"' /sys/fs/cgroup/user/shell
as_u 'kiln --root /tmp/u/store run --rm -m 32m box:1 sh -c "a=\$(head -c 100000000 /dev/zero | tr \"\\0\" x); echo survived" >/dev/null 2>&1; echo "exit $?"' /sys/fs/cgroup/user/shell
echo "groups left: $(find /sys/fs/cgroup/user/kiln -mindepth 1 -type d | wc -l)"
