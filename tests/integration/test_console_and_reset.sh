#!/usr/bin/env bash
# Two boots:
#  1. typing reaches the guest through the 8250's receive path, and a guest
#     `reboot` (i8042 reset line) ends kvmsandbox with exit 0;
#  2. a guest that triple-faults (reboot=t makes the kernel do exactly that)
#     ends kvmsandbox non-zero with a one-line explanation.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
kernel=$(find_kernel) || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"

cat >"$T_TMP/script.sh" <<'SCRIPT'
echo "READY-FOR-INPUT"
read -r line
echo "GOT=<$line>"
reboot -f
SCRIPT
build_initramfs "$T_TMP/initrd.cpio.gz" "$T_TMP/script.sh"

# 1. Input arrives only after the guest says it is ready: the kernel's 8250
# driver clears the receive FIFO when the console is opened.
mkfifo "$T_TMP/in"
exec 3<>"$T_TMP/in"  # held open so kvmsandbox does not see EOF early
out=$T_TMP/console.out err=$T_TMP/console.err
echo "+ kvmsandbox run (input through a fifo)"
timeout -k 10 300 "$KVMSANDBOX" run --kernel "$kernel" --initrd "$T_TMP/initrd.cpio.gz" \
    --params quiet <"$T_TMP/in" >"$out" 2>"$err" &
pid=$!
for _ in $(seq 1 2800); do
    grep -q READY-FOR-INPUT "$out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
printf 'hello serial 8250\n' >&3
rc=0
wait "$pid" || rc=$?
exec 3>&-
echo "  exit $rc"
RUN_OUT=$out RUN_ERR=$err
show_run
check "guest read the typed line" grep -q '^GOT=<hello serial 8250>' <(tr -d '\r' <"$out")
check "guest reboot ends kvmsandbox with exit 0 (got $rc)" test "$rc" = 0
check "no error message on a clean reboot" test ! -s "$err"

# 2. Triple fault.
cat >"$T_TMP/crash.sh" <<'SCRIPT'
echo "ABOUT-TO-TRIPLE-FAULT"
reboot -f
SCRIPT
build_initramfs "$T_TMP/crash.cpio.gz" "$T_TMP/crash.sh"
run_vmm 300 run --kernel "$kernel" --initrd "$T_TMP/crash.cpio.gz" --params "quiet reboot=t"
show_run
check "the guest got as far as its script" grep -q ABOUT-TO-TRIPLE-FAULT "$RUN_OUT"
check "triple fault exits non-zero (got $RUN_RC)" test "$RUN_RC" != 0 -a "$RUN_RC" != 124
check "one line on stderr about the triple fault" \
    test "$(line_count "$RUN_ERR")" = 1 -a -n "$(grep -i 'triple' "$RUN_ERR")"
finish
