#!/usr/bin/env bash
# A guest that floods its output while nobody reads ours cannot make the VMM
# grow: with the reader stalled, the VMM's resident memory stays where it
# was (output waits in the guest, not in host buffers). When the reader goes
# away, CMD gets SIGPIPE as it would locally (exit 141) and the run ends.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"

export KVMSANDBOX_INSTANCE_DIR=$T_TMP/instances
cd "$T_TMP" || exit 1

VM_PID=
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    [[ -n $VM_PID ]] && kill -9 "$VM_PID" 2>/dev/null
    rm -rf "$T_TMP"
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# Our stdout is a FIFO that this shell holds open and never reads.
mkfifo out.fifo
exec 3<>out.fifo
echo "+ kvmsandbox --name flood --mem 256M -- sh -c 'touch flooding; cat /dev/zero' >stalled-fifo &"
# (3>&-: the VMM must not inherit our hold on the FIFO's read end, or its
# reader would never go away.)
"$KVMSANDBOX" --name flood --mem 256M -- sh -c 'touch flooding; exec cat /dev/zero' \
    </dev/null >out.fifo 2>vm.err 3>&- &
VM_PID=$!
wait_for_file flooding "$VM_PID" 900 || true
check "the flood started" test -e flooding
sleep 5
rss1=$(rss_kib "$VM_PID")
sleep 15
rss2=$(rss_kib "$VM_PID")
echo "VmRSS of the VMM: ${rss1} KiB, 15 s later ${rss2} KiB"
check "the VMM did not grow while its reader stalled (${rss1} -> ${rss2} KiB)" \
    test $((rss2 - rss1)) -lt 16384
"$KVMSANDBOX" stat flood >stat.txt 2>&1 || true
check "the VMM still answers stat while its output is stalled" grep -q '^console' stat.txt
grep -q '^console' stat.txt || cat stat.txt

# The reader goes away: CMD dies of SIGPIPE, as it would locally.
exec 3>&-
rc=0
timeout 120 tail --pid="$VM_PID" -f /dev/null || true
if kill -0 "$VM_PID" 2>/dev/null; then
    kill -9 "$VM_PID"
    echo "the VMM was still running 120 s after its reader went away: killed"
fi
wait "$VM_PID" || rc=$?
VM_PID=
check "the run ends when the reader is gone: exit 141, SIGPIPE (got $rc)" test "$rc" = 141
[[ $rc == 141 ]] || tail -5 vm.err

finish
