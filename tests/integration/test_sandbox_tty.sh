#!/usr/bin/env bash
# When our stdin and stdout are a terminal, CMD gets a terminal (README.md,
# "Running a command"): a pty in the guest with our window size, its exit status still
# exact, and a line typed on our side reaching CMD. util-linux's `script`
# gives kvmsandbox a pty here.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"
command -v script >/dev/null || skip "no 'script' (util-linux) to give kvmsandbox a terminal"

work=$T_TMP/work
mkdir -p "$work"
cd "$work" || exit 1

# One run: the terminal, its size (set on our side before the start), a line
# typed on our side, and the exit status. The typed line goes in after the
# command says it is ready, through a fifo held open.
mkfifo "$T_TMP/keys"
exec 3<>"$T_TMP/keys"
inner="stty rows 33 cols 101; exec $KVMSANDBOX -- sh -c 'tty; stty size; echo READY; read -r l; echo \"GOT=\$l\"; exit 5'"
echo "+ script -qec \"$inner\""
timeout -k 10 300 script -qec "$inner" /dev/null <"$T_TMP/keys" >"$T_TMP/out" 2>&1 &
pid=$!
for _ in $(seq 1 2400); do
    grep -q READY "$T_TMP/out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
printf 'typed line\r' >&3
rc=0
wait "$pid" || rc=$?
exec 3>&-
out=$(tr -d '\r' <"$T_TMP/out")
echo "---- output ----"
echo "$out"
echo "----------------"
check "CMD's stdin is a terminal (tty prints /dev/pts/N)" grep -q '^/dev/pts/[0-9]' <<<"$out"
check "the guest terminal has our window size (33 101)" grep -qx '33 101' <<<"$out"
check "a line typed on our terminal reaches CMD" grep -q '^GOT=typed line$' <<<"$out"
check "exit status 5 comes back through the terminal session (got $rc)" test "$rc" = 5
finish
