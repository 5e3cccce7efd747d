#!/usr/bin/env bash
# `kvmsandbox run` without --initrd: the user's shell in a VM that sees the
# host's system read-only and the current directory read-write; its exit
# status is ours. (Here stdin is a script, not a terminal.)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"
export KVMSANDBOX_INSTANCE_DIR=$T_TMP/instances
work=$T_TMP/work
mkdir -p "$work"
cd "$work" || exit 1

cat >"$T_TMP/script" <<'EOF2'
echo "in-vm $(uname -r) $(pwd -P)"
echo written >from-shell.txt
touch /usr/run-shell-test 2>/dev/null && echo "usr writable"
exit 7
EOF2
SHELL=/bin/sh run_sandbox "$T_TMP/script" 240 run --name shell1
show_run
check "run's shell: exit status 7 is ours (got $RUN_RC)" test "$RUN_RC" = 7
check "the shell ran in the VM, in the current directory" \
    grep -q "^in-vm .* $(pwd -P)\$" "$RUN_OUT"
check "a file it wrote is on the host" test "$(cat from-shell.txt 2>/dev/null)" = written
check "/usr is read-only for it" not_grep "usr writable" "$RUN_OUT"
check "its instance socket is gone" test ! -e "$KVMSANDBOX_INSTANCE_DIR/shell1.sock"

# setup NAME + run --rootfs NAME: what the guest writes in its root persists
# across runs; the host system is still there, read-only.
export KVMSANDBOX_ROOTFS_DIR=$T_TMP/roots
check "setup dev1" "$KVMSANDBOX" setup dev1
check "the rootfs has its skeleton" test -d "$KVMSANDBOX_ROOTFS_DIR/dev1/var/tmp"
rc=0
"$KVMSANDBOX" setup dev1 >/dev/null 2>setup.err || rc=$?
check "setup of an existing name: 125, one line ($(cat setup.err))" \
    bash -c "[[ $rc == 125 && \$(wc -l <setup.err) == 1 ]]"
echo "root of dev1" >"$KVMSANDBOX_ROOTFS_DIR/dev1/srv/marker"
printf '%s\n' 'echo kept >/opt/persist.txt' 'cat /srv/marker' 'ls /usr/bin/env' >"$T_TMP/script1"
SHELL=/bin/sh run_sandbox "$T_TMP/script1" 240 run --rootfs dev1
show_run
check "run --rootfs: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
check "the guest's root is the rootfs (its /srv/marker)" grep -qx "root of dev1" "$RUN_OUT"
check "the host system is mounted inside it" grep -q "^/usr/bin/env\$" "$RUN_OUT"
check "what the guest wrote in /opt is in the rootfs on the host" \
    test "$(cat "$KVMSANDBOX_ROOTFS_DIR/dev1/opt/persist.txt" 2>/dev/null)" = kept
printf '%s\n' 'cat /opt/persist.txt' >"$T_TMP/script2"
SHELL=/bin/sh run_sandbox "$T_TMP/script2" 240 run --rootfs dev1
check "a second run sees it (exit $RUN_RC)" grep -qx kept "$RUN_OUT"
rc=0
"$KVMSANDBOX" run --rootfs nosuch </dev/null >/dev/null 2>nr.err || rc=$?
check "run --rootfs of an unknown root: 125, names setup ($(cat nr.err))" \
    bash -c "[[ $rc == 125 ]] && grep -q 'kvmsandbox setup nosuch' nr.err"
rm -f setup.err nr.err
finish
