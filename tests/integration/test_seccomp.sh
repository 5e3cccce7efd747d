#!/usr/bin/env bash
# Hardening: once set-up is done every thread of the VM process runs under
# its role's seccomp allow-list (Seccomp: 2 in /proc) with no capabilities
# but, when serving files as root, the worker pool's five; a forbidden call
# kills the process with one line that names it. The allow-lists are
# complete: a sandbox exercising 9p, a disk and user networking, and a `run`
# of a kernel with an initrd, all work with seccomp on (the default).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
kernel=$(find_kernel) || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"
BB=$(command -v busybox) || skip "busybox is not installed (apt-get install busybox-static)"

export KVMSANDBOX_INSTANCE_DIR=$T_TMP/instances
work=$T_TMP/work
mkdir -p "$work/www"
cd "$work" || exit 1

HTTPD_PID=
VM_PID=
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    [[ -n $HTTPD_PID ]] && kill "$HTTPD_PID" 2>/dev/null
    [[ -n $VM_PID ]] && kill -9 "$VM_PID" 2>/dev/null
    rm -rf "$T_TMP"
}
trap cleanup EXIT

# ---- the default is on, and a plain run works ----
run_sandbox /dev/null 180 -- true
check "true with seccomp on: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
check "true with seccomp on: empty stderr" test ! -s "$RUN_ERR"
[[ $RUN_RC == 0 ]] || show_run

run_sandbox /dev/null 180 --seccomp=off -- true
check "--seccomp=off: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
[[ $RUN_RC == 0 ]] || show_run

# ---- the debug hook: the main thread calls personality() under its filter ----
KVMSANDBOX_DEBUG_FORBIDDEN_SYSCALL=1 run_sandbox /dev/null 180 -- sleep 60
expect_one_line_error "debug hook" 125 \
    '^kvmsandbox: seccomp: forbidden system call personality \(135\) in main thread$'
check "debug hook: the process died at once, not after sleep 60 (${RUN_SECS}s)" test "$RUN_SECS" -lt 55

# ---- /proc of a running instance ----
field() { sed -n "s/^$1:[[:space:]]*//p" "$2"; }
echo "+ kvmsandbox --name sec --net user -- sh -c 'touch ready; sleep 30' &"
"$KVMSANDBOX" --name sec --net user -- sh -c 'touch ready; sleep 30' </dev/null >vm.out 2>vm.err &
VM_PID=$!
wait_for_file ready "$VM_PID" 900 || true
check "the instance started its command" test -e ready
cp "/proc/$VM_PID/status" main.status 2>/dev/null || true
for t in /proc/"$VM_PID"/task/*; do
    printf '%s %s %s %s %s\n' "$(cat "$t/comm")" "$(field Seccomp "$t/status")" \
        "$(field NoNewPrivs "$t/status")" "$(field CapEff "$t/status")" "$(field CapBnd "$t/status")"
done >tasks.txt 2>/dev/null || true
kill "$VM_PID" 2>/dev/null || true
wait "$VM_PID" 2>/dev/null || true
VM_PID=
echo "threads (comm seccomp nnp capeff capbnd):"
cat tasks.txt

check "main thread: Seccomp: 2 (filter)" test "$(field Seccomp main.status)" = 2
check "main thread: one filter" test "$(field Seccomp_filters main.status)" = 1
check "main thread: NoNewPrivs: 1" test "$(field NoNewPrivs main.status)" = 1
check "main thread: no effective capability" test "$(field CapEff main.status)" = 0000000000000000
check "main thread: no permitted capability" test "$(field CapPrm main.status)" = 0000000000000000
check "main thread: no inheritable capability" test "$(field CapInh main.status)" = 0000000000000000
if [[ $(id -u) == 0 ]]; then
    check "main thread: empty bounding set" test "$(field CapBnd main.status)" = 0000000000000000
fi
check "2 vCPU threads" test "$(grep -c '^vcpu ' tasks.txt)" = 2
check "4 worker threads" test "$(grep -c '^worker ' tasks.txt)" = 4
check "a net-rx thread" test "$(grep -c '^net-rx ' tasks.txt)" = 1
check "a slirp thread" test "$(grep -c '^slirp ' tasks.txt)" = 1
check "every thread runs under a filter" test "$(awk '$2 != 2' tasks.txt | wc -l)" = 0
check "every thread has no_new_privs" test "$(awk '$3 != 1' tasks.txt | wc -l)" = 0
check "vCPU, net-rx and slirp threads: no capability" \
    test "$(awk '$1 != "worker" && $4 != "0000000000000000"' tasks.txt | wc -l)" = 0
if [[ $(id -u) == 0 ]]; then
    # CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID: the 9p server as root.
    check "workers keep exactly the 9p server's capabilities (root)" \
        test "$(awk '$1 == "worker" && $4 != "000000000000001f"' tasks.txt | wc -l)" = 0
    check "every thread: empty bounding set (root)" test "$(awk '$5 != "0000000000000000"' tasks.txt | wc -l)" = 0
else
    check "workers: no capability" test "$(awk '$1 == "worker" && $4 != "0000000000000000"' tasks.txt | wc -l)" = 0
fi

# ---- the allow-lists are complete: 9p, a disk and user networking at once ----
truncate -s 64M disk.img
mkfs.ext4 -q -F -E nodiscard disk.img
head -c 300000 /dev/urandom | base64 >www/page.txt
start_httpd "$work/www" page.txt
cat >guest.sh <<EOF
set -u
# 9p: create, write, append, read, rename, link, symlink, chmod, truncate, xattrs, unlink, rmdir
mkdir -p t/sub
for i in \$(seq 1 200); do echo "line \$i" >"t/sub/f\$i"; done
cat t/sub/f* | wc -l >t/count
mv t/sub/f1 t/sub/renamed && ln t/sub/renamed t/hard && ln -s renamed t/sub/soft
chmod 600 t/sub/f2 && touch -d '2001-01-01' t/sub/f3 && truncate -s 3 t/sub/f4
dd if=/dev/urandom of=t/big bs=64k count=32 2>/dev/null && sha256sum <t/big >big.guest.sum
mkfifo t/fifo && rm t/fifo
rm -f t/sub/f1* t/hard && rm -rf t/sub
# Two levels: enough walking (2000 entries here) without 80 000 nested 9p round trips.
find /usr/lib -maxdepth 2 2>find.err | wc -l >find.count
# a disk
mkdir -p /mnt/d && mount -t ext4 /dev/vda /mnt/d && head -c 1000000 /dev/urandom >/mnt/d/x &&
    sync && sha256sum </mnt/d/x >disk.a && sha256sum </mnt/d/x >disk.b && umount /mnt/d && echo disk-ok >disk.txt
# user networking
$BB wget -q -O fetched.txt http://10.0.2.2:$HPORT/page.txt; echo "wget \$?" >wget.rc
exit 0
EOF
run_sandbox /dev/null 600 --net user --disk disk.img -- sh guest.sh
check "9p + disk + net user with seccomp on: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
check "no seccomp report" not_grep "seccomp" "$RUN_ERR"
[[ $RUN_RC == 0 ]] || show_run
check "9p: 200 files written and read back" test "$(cat t/count 2>/dev/null)" = 200
check "9p: the big file reads back on the host" test "$(cat big.guest.sum 2>/dev/null)" = "$(sha256sum <t/big)"
check "9p: the removed directory is gone" test ! -e t/sub
check "9p: find /usr/lib -maxdepth 2 walks the tree ($(cat find.count 2>/dev/null) entries)" test "$(cat find.count 2>/dev/null || echo 0)" -gt 1000
if [[ -s find.err ]]; then
    echo "find's complaints (first 5):"
    head -n 5 find.err
fi
check "9p: find: no permission error" not_grep "ermission denied" find.err
check "disk: written and read back" grep -qx disk-ok disk.txt
check "net user: wget through slirp ($(cat wget.rc 2>/dev/null))" grep -qx 'wget 0' wget.rc
check "net user: the same bytes" cmp -s www/page.txt fetched.txt

# ---- run --kernel --initrd, with the debug hook too ----
echo 'echo "RUN-SECCOMP-OK"' >"$T_TMP/script.sh"
build_initramfs "$T_TMP/initrd.cpio.gz" "$T_TMP/script.sh"
run_vmm 300 run --kernel "$kernel" --initrd "$T_TMP/initrd.cpio.gz" --cpus 2 --mem 256M --params quiet
check "run --initrd with seccomp on: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
check "run --initrd: the script ran" grep -q RUN-SECCOMP-OK <(tr -d '\r' <"$RUN_OUT")
[[ $RUN_RC == 0 ]] || show_run
KVMSANDBOX_DEBUG_FORBIDDEN_SYSCALL=1 run_vmm 300 run --kernel "$kernel" --initrd "$T_TMP/initrd.cpio.gz" --mem 256M
expect_one_line_error "run --initrd, debug hook" 125 'forbidden system call personality \(135\) in main thread'

# ---- --user as root: the VM process and the command become that user ----
if [[ $(id -u) == 0 ]]; then
    chmod 755 "$T_TMP"
    chmod 777 "$work"
    run_sandbox /dev/null 180 --user 65534:65534 -- sh -c 'id -u; id -g; echo mine >owned.txt'
    check "--user 65534: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
    check "--user 65534: the command runs as 65534:65534" file_is "$RUN_OUT" $'65534\n65534\n'
    check "--user 65534: its file is 65534's on the host" test "$(stat -c %u:%g owned.txt 2>/dev/null)" = 65534:65534
    [[ $RUN_RC == 0 ]] || show_run
fi

finish
