#!/usr/bin/env bash
# build-test-initramfs.sh OUT.cpio.gz [SCRIPT]
#
# Builds a small initramfs for booting a stock kernel in tests: a static
# busybox with its applets, and an /init that mounts /proc, /sys, /dev (and
# /dev/pts, /tmp), runs SCRIPT (baked into the image as /test-script, run by
# busybox sh with its output on the console), then powers off with
# `poweroff -f`. Without SCRIPT, /init starts an interactive shell on the
# console and powers off when it exits.
#
# No root needed: files are recorded as owned by root, and /init opens
# /dev/console itself after mounting devtmpfs.
set -euo pipefail

usage() { echo "usage: build-test-initramfs.sh OUT.cpio.gz [SCRIPT]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
out=$1
script=${2:-}
[[ -z $script || -r $script ]] || { echo "build-test-initramfs: cannot read $script" >&2; exit 1; }
command -v cpio >/dev/null 2>&1 || { echo "build-test-initramfs: cpio not found (apt-get install cpio)" >&2; exit 1; }

busybox=""
for b in /bin/busybox /usr/bin/busybox; do
    if [[ -x $b ]] && ! ldd "$b" >/dev/null 2>&1; then
        busybox=$b
        break
    fi
done
[[ -n $busybox ]] || { echo "build-test-initramfs: no static busybox (apt-get install busybox-static)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/test-initramfs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,root,etc}
cp "$busybox" "$tmp/bin/busybox"
if [[ -n $script ]]; then
    cp "$script" "$tmp/test-script"
    chmod 0755 "$tmp/test-script"
fi
cat >"$tmp/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts
ln -sf /proc/self/fd /dev/fd
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /tmp
if [ -f /test-script ]; then
    sh /test-script
    echo "TEST-SCRIPT-EXIT=$?"
else
    echo "test initramfs: interactive shell; exit it to power off"
    setsid cttyhack sh -l
fi
sync
poweroff -f
INIT
chmod 0755 "$tmp/init"
mkdir -p "$(dirname "$out")"
(cd "$tmp" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet | gzip -1) >"$out.part.$$"
mv -f "$out.part.$$" "$out"
