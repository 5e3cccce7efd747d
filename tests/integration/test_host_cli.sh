#!/usr/bin/env bash
# The command set without a VM: help, version, and the control commands'
# answers when no instance exists (one line, non-zero), run on the host.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export KVMSANDBOX_INSTANCE_DIR=$T_TMP/instances
K=$KVMSANDBOX

out=$("$K" version)
check "version prints 'kvmsandbox X.Y.Z' ($out)" bash -c "[[ '$out' =~ ^kvmsandbox\ [0-9]+\.[0-9]+\.[0-9]+$ ]]"
check "--version says the same" test "$("$K" --version)" = "$out"

for c in run list stop pause resume stat debug balloon version; do
    "$K" help "$c" >help.out 2>&1
    check "help $c shows its usage" grep -q "$c" help.out
done
rc=0
"$K" help nosuch >/dev/null 2>help.err || rc=$?
check "help of an unknown command: exit 125, one line (rc $rc)" \
    bash -c "[[ $rc == 125 && \$(wc -l <help.err) == 1 ]]"
rm -f help.out help.err

"$K" list >list.out
check "list with no instance prints only its header" test "$(wc -l <list.out)" = 1
check "list --json with no instance prints []" test "$("$K" list --json)" = "[]"
check "the instance directory is private (0700)" test "$(stat -c %a "$KVMSANDBOX_INSTANCE_DIR")" = 700

# A stale socket (a VM that died without cleaning up) is removed by list.
python3 - "$KVMSANDBOX_INSTANCE_DIR/ghost.sock" <<'PY' || true
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
PY
if [[ -S $KVMSANDBOX_INSTANCE_DIR/ghost.sock ]]; then
    "$K" list >list.out
    check "list does not show a dead instance's socket" not_grep ghost list.out
    check "list removed the stale socket" test ! -e "$KVMSANDBOX_INSTANCE_DIR/ghost.sock"
fi

# one_line_fail WHAT RC_RANGE CMD...: CMD fails with one line on stderr.
one_line_fail() {
    local what=$1 rc=0
    shift
    "$@" >/dev/null 2>err.txt || rc=$?
    check "$what: non-zero exit ($rc), one line: $(head -c 150 err.txt)" \
        bash -c "[[ $rc != 0 && \$(wc -l <err.txt) == 1 ]]"
}
one_line_fail "stat of an unknown name" "$K" stat nosuch
one_line_fail "stop of an unknown name" "$K" stop nosuch
one_line_fail "pause of a bad name" "$K" pause ../etc
one_line_fail "balloon with a bad size" "$K" balloon x inflate lots
one_line_fail "balloon with a bad op" "$K" balloon x squeeze 1M
one_line_fail "stop without a name" "$K" stop
check "stop --all with no instance succeeds" "$K" stop --all
one_line_fail "run with an invalid --name" "$K" run --name 'bad/name' --initrd /dev/null
# A host that cannot boot fails at once and does not unpack the kernel into
# the cache first (that is ~60 MiB and, natively, 0.7 s of xz).
if ! kvm_usable && find_kernel >/dev/null; then
    rc=0
    XDG_CACHE_HOME=$T_TMP/cache "$K" -- true 2>err.txt || rc=$?
    check "no usable KVM ($(kvm_why_not)): exit 125 (got $rc)" test "$rc" = 125
    check "... in one line" test "$(wc -l <err.txt)" = 1
    check "... and no unpacked kernel left in the cache" \
        test -z "$(find "$T_TMP/cache" -name '*.vmlinux' 2>/dev/null)"
fi
rm -f err.txt list.out
finish
