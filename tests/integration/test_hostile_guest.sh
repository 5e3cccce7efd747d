#!/usr/bin/env bash
# A guest root that attacks its own devices never takes the host process with
# it. From inside the sandbox (uid 0), the test unbinds the guest's drivers
# from virtio-rng, virtio-blk and virtio-balloon and then, with busybox devmem
# and the PCI config files of sysfs: writes random values all over their
# BARs (common config, ISR, device config, notify), programs queues at
# addresses outside guest memory and of absurd sizes and kicks them, fills
# their PCI config space with random bytes (BARs moved anywhere, MSI-X
# toggled), and writes and reads unknown I/O ports through /dev/port.
# Afterwards the VMM still answers `stat`, the untouched devices (console,
# 9p) still carry the command's output and files, and the run ends with the
# command's own status.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"
[[ $(id -u) == 0 ]] || skip "the guest command runs with our uid; the attack needs root in the guest"
BB=$(command -v busybox) || skip "busybox is not installed (apt-get install busybox-static)"

export KVMSANDBOX_INSTANCE_DIR=$T_TMP/instances
work=$T_TMP/work
mkdir -p "$work"
cd "$work" || exit 1
truncate -s 16M victim.img

cat >attack.sh <<EOF
BB=$BB
EOF
cat >>attack.sh <<'EOF'
w32() { $BB devmem "$1" 32 "$2" 2>/dev/null; }
attacked=0
for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor")" = 0x1af4 ] || continue
    case "$(cat "$d/device")" in
        0x1042 | 0x1044 | 0x1045) ;; # blk, rng, balloon
        *) continue ;;
    esac
    echo "${d##*/}: $(cat "$d/device")" >&2
    [ -e "$d/driver" ] && echo "${d##*/}" >"$d/driver/unbind"
    echo "${d##*/}: unbound" >&2
    # Memory decoding and bus mastering on again (the unbind turned them off).
    printf '\006\000' | dd of="$d/config" bs=1 seek=4 conv=notrunc 2>/dev/null
    bar=$(awk 'NR == 1 { print $1 }' "$d/resource")
    bar=$((bar))
    [ "$bar" -ne 0 ] || continue
    # A queue far outside guest memory, absurdly sized, enabled and kicked.
    w32 $((bar + 0x14)) 0      # reset
    w32 $((bar + 0x14)) 3      # ACKNOWLEDGE | DRIVER
    w32 $((bar + 0x16)) 0      # queue_select 0 (16-bit field, 32-bit write)
    w32 $((bar + 0x18)) 65535  # queue_size
    w32 $((bar + 0x20)) 4294963200 # desc lo
    w32 $((bar + 0x24)) 4294967295 # desc hi
    w32 $((bar + 0x28)) 4096   # driver (avail) at guest page 1
    w32 $((bar + 0x30)) 8192   # device (used)
    w32 $((bar + 0x1c)) 1      # queue_enable
    w32 $((bar + 0x14)) 15     # ... FEATURES_OK | DRIVER_OK
    for q in 0 1 2 3; do w32 $((bar + 0x3000 + 4 * q)) "$q"; done
    # Then anything anywhere in the BAR, kicks included (pairs of random
    # words: offset, value; one od for all, processes are dear when nested).
    set -- $(od -An -v -N480 -tu4 /dev/urandom)
    while [ $# -ge 2 ]; do
        w32 $((bar + $1 % 16384 / 4 * 4)) "$2"
        shift 2
    done
    echo "${d##*/}: BAR done" >&2
    for q in 0 1 2 3; do w32 $((bar + 0x3000 + 4 * q)) "$q"; done
    # Random PCI config space: BARs moved, MSI-X and the command register toggled.
    dd if=/dev/urandom of="$d/config" bs=4 count=63 seek=1 conv=notrunc 2>/dev/null
    dd if=/dev/urandom of="$d/config" bs=4 count=63 seek=1 conv=notrunc 2>/dev/null
    echo "${d##*/}: config done" >&2
    attacked=$((attacked + 1))
done
echo "attacked=$attacked"
# Unknown I/O ports (not the reset, power-off or keyboard-controller ones).
for port in 512 513 768 1280 2000 4096 24576 40000 65000; do
    head -c 4 /dev/urandom | dd of=/dev/port bs=1 seek=$port conv=notrunc 2>/dev/null
    dd if=/dev/port bs=1 skip=$port count=4 2>/dev/null >/dev/null
done
# The console and the 9p share still work: say so, and let the host look.
echo "survived"
echo up >ready
i=0
while [ ! -e stat-done ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
exit 7
EOF

(
    for _ in $(seq 2000); do
        if [[ -e ready ]]; then
            "$KVMSANDBOX" stat hostile >stat.txt 2>&1
            echo "stat $?" >stat.rc
            touch stat-done
            break
        fi
        sleep 0.2
    done
) &
poller=$!
run_sandbox /dev/null 400 --name hostile --timeout 300 --balloon --disk victim.img \
    --console-log console.log -- sh attack.sh
kill "$poller" 2>/dev/null || true
wait "$poller" 2>/dev/null || true

check "the run ends with the command's own status 7 (got $RUN_RC)" test "$RUN_RC" = 7
check "three devices were attacked" grep -qx 'attacked=3' "$RUN_OUT"
check "the command's output still arrives" grep -qx survived "$RUN_OUT"
check "the VMM answered stat afterwards ($(cat stat.rc 2>/dev/null))" grep -qx 'stat 0' stat.rc
check "stat still lists the devices" grep -q '^rng:' stat.txt
check "nothing internal broke on the host side" not_grep "internal error" "$RUN_ERR"
[[ $RUN_RC == 7 ]] || {
    show_run
    echo "---- guest console (last lines) ----"
    tail -n 30 console.log | tr -d '\r'
}
grep -q '^rng:' stat.txt 2>/dev/null || cat stat.txt 2>/dev/null

finish
