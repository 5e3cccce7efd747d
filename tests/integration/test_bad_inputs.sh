#!/usr/bin/env bash
# kvmsandbox's own errors: exit 125 with exactly one line on stderr that says
# what is wrong. No guest ever boots here.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Where /dev/kvm cannot boot a stock kernel, kvmsandbox (rightly) refuses for
# that reason before looking at its inputs; scripts/test.sh then runs this test
# in a TCG-hosted VM.
kvm_usable || skip "$(kvm_why_not)"
kernel=$(find_kernel || true)
build_initramfs "$T_TMP/initrd.cpio.gz"
initrd=$T_TMP/initrd.cpio.gz

# A bad or missing kernel.
head -c 1048576 /dev/urandom >"$T_TMP/garbage"
run_vmm 60 run --kernel "$T_TMP/garbage" --initrd "$initrd"
expect_one_line_error "garbage kernel" 125 'bzImage|kernel'
run_vmm 60 run --kernel /nonexistent --initrd "$initrd"
expect_one_line_error "missing kernel" 125 '/nonexistent'

# KVMSANDBOX_KVM_DEVICE names a device that does not exist.
if [[ -n $kernel ]]; then
    KVMSANDBOX_KVM_DEVICE=/nonexistent/kvm run_vmm 60 run --kernel "$kernel" --initrd "$initrd"
    expect_one_line_error "KVMSANDBOX_KVM_DEVICE=/nonexistent/kvm" 125 '/nonexistent/kvm'
else
    echo "note: KVMSANDBOX_KVM_DEVICE check not run: no guest kernel found"
fi

# No /dev/kvm at all: an empty /dev in a private mount namespace (needs root).
if [[ -z $kernel ]]; then
    echo "note: missing-/dev/kvm check not run: no guest kernel found"
elif [[ $(id -u) != 0 ]]; then
    echo "note: missing-/dev/kvm check not run: needs root (unshare -m)"
elif ! unshare -m true 2>/dev/null; then
    echo "note: missing-/dev/kvm check not run: unshare -m is not permitted here"
else
    echo "+ (empty /dev) kvmsandbox run --kernel $kernel --initrd $initrd"
    RUN_OUT=$T_TMP/nodev.out RUN_ERR=$T_TMP/nodev.err RUN_RC=0
    # shellcheck disable=SC2016 # expanded by the inner sh
    env -u KVMSANDBOX_KVM_DEVICE timeout -k 10 60 unshare -m sh -c \
        'mount -t tmpfs none /dev && exec "$0" run --kernel "$1" --initrd "$2"' \
        "$KVMSANDBOX" "$kernel" "$initrd" </dev/null >"$RUN_OUT" 2>"$RUN_ERR" || RUN_RC=$?
    echo "  exit $RUN_RC"
    expect_one_line_error "no /dev/kvm" 125 '/dev/kvm'
fi
finish
