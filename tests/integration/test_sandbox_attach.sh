#!/usr/bin/env bash
# A guest root that mounts one of our 9p shares itself, with attach names of
# its own choosing (aname=/, /etc, ../.., /root, ...), still sees only that
# share, read-only as it was given, and never its parent. A hostile guest
# kernel could send any attach name (the 9p unit tests send crafted ones);
# this is what guest root can ask for through the ordinary kernel client.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"
[[ $(id -u) == 0 ]] || skip "the guest command runs with our uid; mounting needs root in the guest"

# 9pnet_virtio lets one mount use a device at a time, so the guest first
# unmounts an extra read-only share and then mounts its tag again itself.
work=$T_TMP/work
shared=$T_TMP/parent/shared
mkdir -p "$work" "$shared/sub"
echo "parent secret" >"$T_TMP/parent/parent-secret.txt"
echo inside >"$shared/inside.txt"
cd "$work" || exit 1

cat >attach.sh <<'SCRIPT'
tag=$(awk '$3 == "9p" && $2 == "/mnt/extra" { print $1 }' /proc/mounts | tail -n 1)
echo "TAG=$tag"
umount /mnt/extra || echo "UMOUNT-FAILED"
mkdir -p /tmp/m
for aname in / /etc ../.. /mnt/extra/.. /root; do
    if mount -t 9p -o trans=virtio,version=9p2000.L,aname="$aname" "$tag" /tmp/m; then
        echo "LIST[$aname]=$(ls -A /tmp/m | sort | tr '\n' ' ')"
        [ -e /tmp/m/../parent-secret.txt ] && echo "LEAK[$aname]"
        touch /tmp/m/new 2>/dev/null && echo "WROTE[$aname]"
        umount /tmp/m
    else
        echo "LIST[$aname]=mount-failed"
    fi
done
SCRIPT

run_sandbox /dev/null 300 --share "$shared:/mnt/extra:ro" -- sh attach.sh
check "the script ran (exit $RUN_RC)" test "$RUN_RC" = 0
of=$T_TMP/attach.out
tr -d '\r' <"$RUN_OUT" >"$of"
check "found the share's tag ($(grep '^TAG=' "$of"))" grep -Eq '^TAG=kvmsb[0-9]+$' "$of"
check "the guest could unmount it" not_grep UMOUNT-FAILED "$of"
for aname in / /etc ../.. /mnt/extra/.. /root; do
    got=$(grep -F "LIST[$aname]=" "$of" | sed 's/^[^=]*=//')
    check "aname=$aname shows the share only ($got)" test "$got" = "inside.txt sub "
    check "aname=$aname: the share stays read-only" not_grep "WROTE[$aname]" "$of"
done
check "no parent directory reached" not_grep 'LEAK' "$of"
check "nothing was created in the share" test ! -e "$shared/new"
[[ $RUN_RC == 0 ]] && grep -q 'inside.txt sub' "$of" || show_run

finish
