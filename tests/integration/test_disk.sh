#!/usr/bin/env bash
# virtio-blk: an ext4 image made here is mounted in the guest, written and
# synced; afterwards `e2fsck -fn` on the host finds it clean and the file is
# there. A second disk given ",ro" is read-only to the guest (writes fail,
# the image is unchanged). Discard (fstrim) reaches the image. `run --disk
# IMG` boots the system on the image: its /sbin/init runs as PID 1 and its
# poweroff ends the run with 0. Bad --disk values are one line and 125.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"
command -v mkfs.ext4 >/dev/null && command -v e2fsck >/dev/null && command -v debugfs >/dev/null ||
    skip "e2fsprogs is not installed (apt-get install e2fsprogs)"
BB=$(command -v busybox) || skip "busybox is not installed (apt-get install busybox-static)"

export KVMSANDBOX_INSTANCE_DIR=$T_TMP/instances
work=$T_TMP/work
mkdir -p "$work/rocontent"
cd "$work" || exit 1

truncate -s 64M rw.img
mkfs.ext4 -q -F -E nodiscard rw.img
head -c 100000 /dev/urandom >rocontent/data.bin
truncate -s 32M ro.img
mkfs.ext4 -q -F -d rocontent ro.img
ro_sum=$(sha256sum <ro.img)

cat >guest.sh <<EOF
set -u
mkdir -p /mnt/a /mnt/b
mount -t ext4 /dev/vda /mnt/a || exit 11
head -c 1000000 /dev/urandom >/mnt/a/written.bin
sha256sum </mnt/a/written.bin >written.sum
sync
fstrim -v /mnt/a >fstrim.txt 2>&1; echo "fstrim \$?" >>fstrim.txt
umount /mnt/a || exit 12
cat /sys/block/vdb/ro >vdb-ro.txt
dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct 2>dd.err && echo "dd-succeeded" >dd.txt
mount -t ext4 -o ro /dev/vdb /mnt/b || exit 13
sha256sum </mnt/b/data.bin >ro-data.sum
touch /mnt/b/new 2>/dev/null && echo "touch-succeeded" >touch.txt
umount /mnt/b
# Hold on until the host has read the instance's counters.
echo up >ready
i=0
while [ ! -e stat-done ] && [ \$i -lt 600 ]; do sleep 0.2; i=\$((i + 1)); done
exit 0
EOF

# `stat` while the guest waits at its end: the disks' counters.
(
    for _ in $(seq 1500); do
        if [[ -e ready ]]; then
            "$KVMSANDBOX" stat disk1 >stat.txt 2>&1
            touch stat-done
            break
        fi
        sleep 0.2
    done
) &
poller=$!
run_sandbox /dev/null 300 --name disk1 --disk rw.img --disk ro.img,ro -- sh guest.sh
kill "$poller" 2>/dev/null || true
wait "$poller" 2>/dev/null || true
check "stat: rw.img counts the bytes written" grep -Eq '^blk:rw.img:.* write_bytes=[1-9]' stat.txt
check "stat: rw.img counts discards" grep -Eq '^blk:rw.img:.* discards=[1-9]' stat.txt
check "stat: ro.img counts reads and no write" grep -Eq '^blk:ro.img:.* read_bytes=[1-9].* write_bytes=0( |$)' stat.txt
grep -q 'blk:rw.img' stat.txt || cat stat.txt
check "the disk script exits 0 (got $RUN_RC)" test "$RUN_RC" = 0
[[ $RUN_RC == 0 ]] || show_run
if e2fsck -fn rw.img >fsck.txt 2>&1; then fsck_ok=1; else fsck_ok=0; fi
check "e2fsck -fn on the written image is clean" test "$fsck_ok" = 1
((fsck_ok)) || cat fsck.txt
debugfs -R 'cat /written.bin' rw.img 2>/dev/null | sha256sum >host-written.sum
check "the file written in the guest is in the image, same bytes" cmp -s written.sum host-written.sum
check "fstrim (discard) succeeded in the guest ($(tail -1 fstrim.txt 2>/dev/null))" grep -qx 'fstrim 0' fstrim.txt
check "the ,ro disk is read-only in the guest" grep -qx 1 vdb-ro.txt
check "a raw write to the ,ro disk fails" test ! -e dd.txt
check "a file system on the ,ro disk refuses writes" test ! -e touch.txt
check "the ,ro disk's data reads back" test "$(cat ro-data.sum 2>/dev/null)" = "$(sha256sum <rocontent/data.bin)"
check "the ,ro image is unchanged" test "$(sha256sum <ro.img)" = "$ro_sum"

# run --disk: a root file system with busybox as its init.
mkdir -p root/bin root/sbin root/dev root/proc root/sys root/etc
cp "$BB" root/bin/busybox
cat >root/sbin/init <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "BOOTED-FROM-DISK pid=$$ root=$(/bin/busybox awk '$2 == "/" { print $1 }' /proc/mounts | /bin/busybox tail -1)"
echo "hello from the disk's init" >/var-marker
/bin/busybox sync
/bin/busybox poweroff -f
EOF
chmod 755 root/sbin/init
truncate -s 64M root.img
mkfs.ext4 -q -F -d root root.img
run_vmm 300 run --disk root.img --mem 256M
check "run --disk: exit 0 after the disk's init powered off (got $RUN_RC)" test "$RUN_RC" = 0
check "run --disk: the disk's /sbin/init ran as PID 1 with /dev/vda as root" \
    grep -aq 'BOOTED-FROM-DISK pid=1 root=/dev/vda' "$RUN_OUT"
grep -aq 'BOOTED-FROM-DISK' "$RUN_OUT" || show_run
check "run --disk: what init wrote is on the disk" \
    test "$(debugfs -R 'cat /var-marker' root.img 2>/dev/null)" = "hello from the disk's init"

# Bad --disk values.
run_vmm 30 --disk "$work/no-such.img" -- true
expect_one_line_error "--disk of a missing file" 125 'no-such.img'
run_vmm 30 --disk "$work" -- true
expect_one_line_error "--disk of a directory" 125 'not a regular file|directory'
run_vmm 30 --disk rw.img,readonly -- true
expect_one_line_error "--disk FILE,readonly" 125 'unknown option'

finish
