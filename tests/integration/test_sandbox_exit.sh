#!/usr/bin/env bash
# kvmsandbox -- CMD: the exit status is CMD's, exactly (README.md, "Running a command"):
# 0..255 as is, death by signal N as 128+N, 127 for a command not found, 126
# for a command that cannot be executed.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"

# The guest sees the current directory: work in a scratch one.
work=$T_TMP/work
mkdir -p "$work"
cd "$work" || exit 1

# The boot cache (kernel plan and initramfs) in a directory of our own: the
# first start stores one image, the following ones reuse it.
export XDG_CACHE_HOME=$T_TMP/cache
unset KVMSANDBOX_NO_CACHE

# show_if_bad RC_WANTED: show the last run's streams when its status is not RC_WANTED.
show_if_bad() { [[ $RUN_RC == "$1" ]] || show_run; }

run_sandbox /dev/null 180 -- sh -c 'echo hi; exit 42'
check "sh -c 'echo hi; exit 42': exit 42 (got $RUN_RC)" test "$RUN_RC" = 42
check "sh -c 'echo hi; exit 42': stdout is exactly 'hi'" file_is "$RUN_OUT" $'hi\n'
show_if_bad 42

run_sandbox /dev/null 180 -- true
check "true: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
check "true: empty stdout and stderr" test ! -s "$RUN_OUT" -a ! -s "$RUN_ERR"
show_if_bad 0

# shellcheck disable=SC2016 # $$ is the guest shell's
run_sandbox /dev/null 180 -- sh -c 'kill -9 $$'
check "sh -c 'kill -9 \$\$': exit 137 = 128+SIGKILL (got $RUN_RC)" test "$RUN_RC" = 137
show_if_bad 137

missing=kvmsandbox-no-such-command-$$
run_sandbox /dev/null 180 -- "$missing" arg
check "$missing: exit 127 (got $RUN_RC)" test "$RUN_RC" = 127
check "$missing: stderr says 'not found'" grep -qi 'not found' "$RUN_ERR"
check "$missing: stderr names the command" grep -qF -- "$missing" "$RUN_ERR"
show_if_bad 127

printf '#!/bin/sh\necho should-not-run\n' >notexec
chmod 0644 notexec
run_sandbox /dev/null 180 -- ./notexec
check "./notexec (mode 0644): exit 126 (got $RUN_RC)" test "$RUN_RC" = 126
check "./notexec: it did not run" not_grep should-not-run "$RUN_OUT"
check "./notexec: stderr says why (permission denied / cannot execute)" \
    grep -Eqi 'permission denied|cannot execute|not executable' "$RUN_ERR"
show_if_bad 126

imgs() { find "$XDG_CACHE_HOME/kvmsandbox/boot" -name '*.img' 2>/dev/null | wc -l; }
check "the starts above stored one boot image and reused it (found $(imgs))" test "$(imgs)" = 1
check "the boot cache directory is private (mode $(stat -c %a "$XDG_CACHE_HOME/kvmsandbox/boot" 2>/dev/null))" \
    test "$(stat -c %a "$XDG_CACHE_HOME/kvmsandbox/boot" 2>/dev/null)" = 700
# A damaged image is rebuilt, not trusted.
for f in "$XDG_CACHE_HOME"/kvmsandbox/boot/*.img; do truncate -s 100 "$f"; done
run_sandbox /dev/null 180 -- sh -c 'exit 3'
check "a truncated boot image: the run still works (exit 3, got $RUN_RC)" test "$RUN_RC" = 3
show_if_bad 3
check "... and the image was stored whole again" \
    test "$(stat -c %s "$XDG_CACHE_HOME"/kvmsandbox/boot/*.img 2>/dev/null | head -1)" -gt 100000
# The unpacked kernel (kernel_unpack.h): stored once, booted by every start,
# rebuilt when damaged, and the bzImage is booted without the cache.
vmlinuxes() { find "$XDG_CACHE_HOME/kvmsandbox/boot" -name '*.vmlinux' 2>/dev/null; }
check "the starts above unpacked the kernel once (found $(vmlinuxes | wc -l))" \
    test "$(vmlinuxes | wc -l)" = 1
check "... an x86-64 ELF file" sh -c "head -c 4 '$(vmlinuxes | head -1)' | grep -q ELF"
run_sandbox /dev/null 180 -v -- true
check "-v: the start booted the unpacked kernel" grep -q "booting the unpacked kernel" "$RUN_ERR"
check "-v: guest-init set its clock from the host's" grep -q "clock set from the host's" "$RUN_ERR"
check "-v: ... entered at its own entry point, not the bzImage's" \
    not_grep "booting the bzImage" "$RUN_ERR"
show_if_bad 0
for f in $(vmlinuxes); do truncate -s 4096 "$f"; done
run_sandbox /dev/null 180 -v -- sh -c 'exit 4'
check "a truncated unpacked kernel: the run still works (exit 4, got $RUN_RC)" test "$RUN_RC" = 4
check "... booting a freshly unpacked one" grep -q "booting the unpacked kernel" "$RUN_ERR"
check "... stored whole again" test "$(stat -c %s "$(vmlinuxes | head -1)")" -gt 10000000
show_if_bad 4
KVMSANDBOX_NO_CACHE=1 run_sandbox /dev/null 180 -v -- true
check "KVMSANDBOX_NO_CACHE=1: the run works without the cache (got $RUN_RC)" test "$RUN_RC" = 0
check "KVMSANDBOX_NO_CACHE=1: it boots the bzImage" grep -q "booting the bzImage" "$RUN_ERR"
show_if_bad 0

# Times are exact (README.md): CMD's wall clock is the host's when it starts,
# not the RTC's whole seconds. Its first `date` lies between the host's
# clock before the start and when that line arrived; the second, printed on
# cue (a line on its stdin), within 10 ms of the host's clock around the cue.
mkfifo clock.in
exec {clock_w}<>clock.in
echo "+ kvmsandbox -- sh -c 'date +%s%N; read x; date +%s%N' (on cue)"
t0=$(date +%s%N)
timeout -k 10 180 "$KVMSANDBOX" -- sh -c 'date +%s%N; read x; date +%s%N' \
    <clock.in >clock.out 2>clock.err &
clock_pid=$!
lines() { wc -l <clock.out; }
until (($(lines) >= 1)) || ! kill -0 "$clock_pid" 2>/dev/null; do sleep 0.01; done
h0=$(date +%s%N)
echo go >&"$clock_w"
until (($(lines) >= 2)) || ! kill -0 "$clock_pid" 2>/dev/null; do sleep 0.01; done
h1=$(date +%s%N)
rc=0
wait "$clock_pid" || rc=$?
exec {clock_w}>&-
g0=$(sed -n 1p clock.out) g1=$(sed -n 2p clock.out)
echo "  exit $rc; host $t0 | guest $g0 | host $h0 | guest $g1 | host $h1"
echo "  guest - host at the cue: $(((g1 - h0) / 1000)) us (window $(((h1 - h0) / 1000)) us)"
check "clock: the run printed two times (exit $rc)" bash -c "[[ $rc == 0 && -n '$g1' ]]"
check "clock: CMD's time at its start lies between the host's (within 10 ms)" \
    bash -c "(( $t0 - 10000000 <= ${g0:-0} && ${g0:-0} <= $h0 ))"
check "clock: CMD's time on cue lies between the host's around the cue (within 10 ms)" \
    bash -c "(( $h0 - 10000000 <= ${g1:-0} && ${g1:-0} <= $h1 ))"
[[ $rc == 0 ]] || cat clock.err

finish
