#!/usr/bin/env bash
# --net tap:IF with an existing tap device, in a network namespace this test
# creates: the host side of the tap gets 192.168.77.1/24 and serves a page;
# the guest, given --ip 192.168.77.2/24, fetches it byte for byte; a tap
# that does not exist is refused in one line. Skipped, with the reason,
# where a namespace or a tap cannot be made.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"
BB=$(command -v busybox) || skip "busybox is not installed (apt-get install busybox-static)"
command -v ip >/dev/null || skip "iproute2 is not installed (apt-get install iproute2)"
command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"

export KVMSANDBOX_INSTANCE_DIR=$T_TMP/instances
work=$T_TMP/work
mkdir -p "$work/www"
cd "$work" || exit 1

[[ -e /dev/net/tun ]] || modprobe tun 2>/dev/null || true
[[ -e /dev/net/tun ]] || skip "no /dev/net/tun (the tun module is not available here)"
unshare --net true 2>/dev/null || skip "cannot create a network namespace here (needs CAP_SYS_ADMIN)"

head -c 200000 /dev/urandom | base64 >www/page.txt

# Everything below runs in a fresh network namespace: the tap exists only there.
cat >inns.sh <<EOF
set -u
ip link set lo up
ip tuntap add dev ktap0 mode tap || { echo "SKIP-TAP: cannot create a tap device"; exit 77; }
ip addr add 192.168.77.1/24 dev ktap0
ip link set ktap0 up
$BB httpd -p 192.168.77.1:8081 -h "$work/www"
cat >guest.sh <<'GEOF'
# (busybox 1.35 wget -T crashes, hence timeout(1).)
timeout 60 $BB wget -q -O fetched.txt http://192.168.77.1:8081/page.txt; echo "wget \$?" >wget.rc
$BB ip -4 addr show >ip-addr.txt 2>&1
GEOF
rc=0
timeout -k 10 300 "$KVMSANDBOX" --net tap:ktap0 --ip 192.168.77.2/24 --gateway 192.168.77.1 \
    -- sh guest.sh </dev/null >vm.out 2>vm.err || rc=\$?
echo "vm \$rc" >vm.rc
# A tap that is gone is refused in one line.
"$KVMSANDBOX" --net tap:nosuchtap0 -- true </dev/null >missing.out 2>missing.err
echo "missing \$?" >missing.rc
pkill -f "httpd -p 192.168.77.1:8081" || true
EOF
echo "+ unshare --net bash inns.sh"
rc=0
unshare --net bash inns.sh >inns.log 2>&1 || rc=$?
cat inns.log
[[ $rc == 77 ]] && skip "$(grep SKIP-TAP inns.log | head -1)"

check "the tap run exits 0 ($(cat vm.rc 2>/dev/null))" grep -qx 'vm 0' vm.rc
check "the guest fetched the page over the tap ($(cat wget.rc 2>/dev/null))" grep -qx 'wget 0' wget.rc
check "the fetched page is byte-identical" cmp -s www/page.txt fetched.txt
check "the guest has 192.168.77.2/24" grep -q 'inet 192.168.77.2/24' ip-addr.txt
grep -qx 'vm 0' vm.rc || {
    cat vm.out
    tail -20 vm.err
}
check "a missing tap: exit 125 ($(cat missing.rc 2>/dev/null))" grep -qx 'missing 125' missing.rc
check "a missing tap: one line naming it" test "$(line_count missing.err)" = 1 -a -n "$(grep nosuchtap0 missing.err)"

finish
