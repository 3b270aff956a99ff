#!/usr/bin/env bash
# Boots Debian's own kernel (linux-image-amd64) under qemu's software
# emulation (TCG: KVM hangs on the machines CI runs on) with the unified
# cgroup hierarchy only, from an initramfs made here: busybox, the
# kernel's overlay and veth modules, kiln and its libraries, the test
# base, and SCRIPT, run as root once the VM is up. What SCRIPT prints
# reaches OUT (the serial console); the VM powers off when it ends.
#
#   tests/vm/run.sh KILN BUSYBOX_TAR SCRIPT OUT
set -euo pipefail
kiln=$1 tar=$2 script=$3 out=$4
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
[ -n "$kernel" ] || { echo "no kernel in /boot: apt-get install linux-image-amd64" >&2; exit 2; }
kver=${kernel#/boot/vmlinuz-}
[ -d "/lib/modules/$kver" ] || { echo "no modules for $kver" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "apt-get install qemu-system-x86" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,lib,lib64,proc,sys,dev,tmp,etc,modules,test,new}
cp /usr/bin/busybox "$root/bin/busybox"
# kiln without its debug sections (the initramfs is copied into RAM), and
# the libraries it links.
objcopy --strip-debug "$kiln" "$root/bin/kiln"
for lib in $(ldd "$kiln" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
for m in fs/overlayfs/overlay.ko drivers/net/veth.ko; do
  cp "/lib/modules/$kver/kernel/$m" "$root/modules/"
done
cp "$tar" "$root/test/base.tar"
cp "$script" "$root/test/script.sh"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
if [ ! -e /.switched ]; then
  # pivot_root cannot leave an initramfs' rootfs: into a tmpfs first.
  mount -t tmpfs -o size=80% tmpfs /new
  for d in bin lib lib64 usr etc modules test init; do [ -e /$d ] && cp -a /$d /new/; done
  mkdir -p /new/proc /new/sys /new/dev /new/tmp /new/var/tmp /new/root /new/run
  touch /new/.switched
  umount /proc /sys /dev
  exec switch_root /new /init
fi
mount -t cgroup2 none /sys/fs/cgroup
echo "+memory +pids +cpu +cpuset +io" > /sys/fs/cgroup/cgroup.subtree_control
for m in /modules/*.ko; do insmod "$m"; done
mount -t tmpfs tmpfs /tmp
ip link set lo up
echo "=== kernel $(uname -r), cgroup: $(cat /sys/fs/cgroup/cgroup.controllers)"
export HOME=/root TMPDIR=/tmp
cd /test && sh /test/script.sh 2>&1
echo "=== done $?"
sync
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) > "$work/initrd"
start=$(date +%s)
timeout "${KILN_VM_TIMEOUT:-900}" qemu-system-x86_64 -accel tcg -m 2048 -smp 2 \
  -kernel "$kernel" -initrd "$work/initrd" -nographic -no-reboot \
  -append "console=ttyS0 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 panic=-1 quiet" \
  </dev/null >"$out" 2>&1 || { echo "qemu failed or timed out ($?)" >&2; tail -20 "$out" >&2; exit 1; }
echo "vm seconds: $(( $(date +%s) - start ))" >&2
