#!/usr/bin/env bash
# One boot of a stock kernel with a busybox initramfs, several checks:
# clean exit on guest poweroff, 2 vCPUs, the memory size, the wall clock (RTC).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
kernel=$(find_kernel) || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"

cat >"$T_TMP/script.sh" <<'SCRIPT'
echo "NPROC=$(nproc)"
echo "MEMTOTAL_KB=$(sed -n 's/^MemTotal: *\([0-9]*\) kB.*/\1/p' /proc/meminfo)"
echo "YEAR=$(date -u +%Y)"
SCRIPT
build_initramfs "$T_TMP/initrd.cpio.gz" "$T_TMP/script.sh"

year_before=$(date -u +%Y)
run_vmm 300 run --kernel "$kernel" --initrd "$T_TMP/initrd.cpio.gz" --cpus 2 --mem 512M --params "quiet"
year_after=$(date -u +%Y)
show_run

marker() { tr -d '\r' <"$RUN_OUT" | sed -n "s/^$1=//p" | tail -n 1; }
nproc=$(marker NPROC)
mem_kb=$(marker MEMTOTAL_KB)
year=$(marker YEAR)

check "exit status 0 on guest poweroff (got $RUN_RC)" test "$RUN_RC" = 0
check "the guest init ran its script" grep -q '^TEST-SCRIPT-EXIT=0' <(tr -d '\r' <"$RUN_OUT")
check "guest sees 2 CPUs (NPROC=$nproc)" test "$nproc" = 2
# shellcheck disable=SC2317 # called through check
mem_ok() { [[ $mem_kb =~ ^[0-9]+$ ]] && ((mem_kb >= 400 * 1024 && mem_kb <= 512 * 1024)); }
check "guest MemTotal in [400, 512] MiB (MEMTOTAL_KB=$mem_kb)" mem_ok
check "guest UTC year is the host's (YEAR=$year, host $year_before)" \
    test "$year" = "$year_before" -o "$year" = "$year_after"
finish
