#!/usr/bin/env bash
# User-mode networking (--net user, libslirp): the guest reaches an HTTP
# server on the host's loopback through the gateway 10.0.2.2 and gets the
# same bytes; its interface, route and resolv.conf come from guest-init;
# --publish lets a client on the host reach a server in the guest; `stat`
# shows the net and rng counters; /dev/hwrng gives data. With --net none
# (the default) the same fetch fails and the guest has no interface.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"
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

# The host's server: only on loopback, so the guest can only reach it
# through slirp's gateway mapping.
head -c 300000 /dev/urandom | base64 >www/page.txt
start_httpd "$work/www" page.txt

# The guest: fetch the page, describe its network, serve a page of its own on
# port 8080 and wait until the host has fetched it.
echo "served from the guest $$" >www/guest.txt
cat >guest.sh <<EOF
$BB wget -q -O fetched.txt http://10.0.2.2:$HPORT/page.txt; echo "wget \$?" >wget.rc
$BB ip -4 addr show >ip-addr.txt 2>&1
$BB ip route show >ip-route.txt 2>&1
cat /etc/resolv.conf >resolv.txt 2>&1
head -c 4096 /dev/hwrng >rng.bin 2>rng.err
cat /sys/class/misc/hw_random/rng_current >rng-current.txt 2>&1
$BB httpd -p 8080 -h "$work/www" && echo up >ready
i=0
while [ ! -e done ] && [ \$i -lt 900 ]; do sleep 0.2; i=\$((i + 1)); done
EOF

GPORT=$(free_port)
echo "+ kvmsandbox --name netu --net user --publish $GPORT:8080 -- sh guest.sh"
"$KVMSANDBOX" --name netu --net user --publish "$GPORT:8080" -- sh guest.sh </dev/null >vm.out 2>vm.err &
VM_PID=$!
wait_for_file ready "$VM_PID" 1500 || true
check "the guest's server started" test -e ready

check "guest fetched the host's page through 10.0.2.2 ($(cat wget.rc 2>/dev/null))" grep -qx 'wget 0' wget.rc
check "the fetched page is byte-identical" cmp -s www/page.txt fetched.txt
check "guest address 10.0.2.15/24" grep -q 'inet 10.0.2.15/24' ip-addr.txt
check "the interface takes the device's large MTU (65520)" grep -q 'mtu 65520' ip-addr.txt
check "default route via 10.0.2.2" grep -q 'default via 10.0.2.2' ip-route.txt
check "resolv.conf names 10.0.2.3" grep -qx 'nameserver 10.0.2.3' resolv.txt
check "/dev/hwrng gave 4096 bytes ($(cat rng.err 2>/dev/null))" test "$(stat -c %s rng.bin 2>/dev/null)" = 4096
check "the hwrng is virtio's ($(cat rng-current.txt 2>/dev/null))" grep -q virtio rng-current.txt
check "hwrng data is not constant" test "$(od -An -v -tx1 rng.bin 2>/dev/null | tr -s ' \n' '\n\n' | sort -u | wc -l)" -gt 200

got=$("$BB" wget -q -O - "http://127.0.0.1:$GPORT/guest.txt" 2>&1) || true
check "--publish $GPORT:8080: the host fetched the guest's page ($got)" test "$got" = "$(cat www/guest.txt)"

"$KVMSANDBOX" stat netu >stat.txt 2>&1 || true
check "stat shows the net device's packet counters" grep -Eq 'rx_packets.*[1-9]' stat.txt
check "stat shows tx bytes" grep -Eq 'tx_bytes.*[1-9]' stat.txt
check "stat shows the rng's bytes" grep -Eq 'rng' stat.txt
grep -Eq 'rx_packets.*[1-9]' stat.txt || cat stat.txt

touch done
rc=0
timeout 120 tail --pid="$VM_PID" -f /dev/null || true
wait "$VM_PID" || rc=$?
VM_PID=
check "the networked run exits 0 (got $rc)" test "$rc" = 0
[[ $rc == 0 ]] || {
    cat vm.out
    tail -20 vm.err
}

# --net none: no interface but lo; the same fetch fails.
rm -f fetched.txt
cat >none.sh <<EOF
ls /sys/class/net
# (busybox 1.35's wget -T crashes, hence timeout(1).)
exec timeout 20 $BB wget -q -O fetched.txt http://10.0.2.2:$HPORT/page.txt
EOF
run_sandbox /dev/null 300 -- sh none.sh
# wget's own failure (1), not a crash or the timeout.
check "--net none: the fetch fails (exit $RUN_RC)" test "$RUN_RC" = 1
check "--net none: only lo in /sys/class/net" file_is "$RUN_OUT" $'lo\n'
[[ $RUN_RC != 0 ]] || show_run

# Bad network options: one line, 125, before any boot.
run_vmm 30 --net bridge -- true
expect_one_line_error "--net bridge" 125 'expected none, user or tap'
run_vmm 30 --publish 8080:80 -- true
expect_one_line_error "--publish without --net user" 125 'needs --net user'
run_vmm 30 --net user --publish 80:0 -- true
expect_one_line_error "--publish 80:0" 125 'guest port'

finish
