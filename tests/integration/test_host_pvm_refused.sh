#!/usr/bin/env bash
# On a host whose /dev/kvm is PVM (kvm_pvm), which cannot boot a stock kernel,
# kvmsandbox must refuse quickly and clearly (exit 125, one line naming PVM)
# rather than hang or crash. Runs on the host itself (label "host").
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -d /sys/module/kvm_pvm ]] || skip "host KVM is not PVM"
[[ -c ${KVMSANDBOX_KVM_DEVICE:-/dev/kvm} ]] || skip "kvm_pvm is loaded but there is no /dev/kvm"
kernel=$(find_kernel) || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"
build_initramfs "$T_TMP/initrd.cpio.gz"

start=$SECONDS
run_vmm 30 run --kernel "$kernel" --initrd "$T_TMP/initrd.cpio.gz"
echo "  took $((SECONDS - start)) s"
check "refused within 30 s (exit $RUN_RC; 124 means it hung)" test "$RUN_RC" != 124
expect_one_line_error "PVM host" 125 'PVM'

# The README's first command: the sandbox form says the same in one line and
# names the harness command that runs it in a TCG-hosted VM.
run_vmm 30 -- uname -a
expect_one_line_error "PVM host, sandbox form" 125 'PVM.*scripts/kvm-in-tcg\.sh -- .*kvmsandbox -- uname -a'
finish
