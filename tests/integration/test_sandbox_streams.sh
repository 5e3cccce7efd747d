#!/usr/bin/env bash
# kvmsandbox -- CMD: stdout and stderr are CMD's, separate and byte-exact;
# stdin (with its EOF) reaches CMD; kernel and init messages never appear in
# the streams, only in --console-log (README.md, "Running a command").
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"

# The guest sees the current directory: work in a scratch one.
work=$T_TMP/work
mkdir -p "$work"
cd "$work" || exit 1

# check_no_kernel_text WHAT: neither stream of the last run holds console messages.
check_no_kernel_text() {
    check "$1: no kernel/init messages on stdout" no_kernel_text "$RUN_OUT"
    check "$1: no kernel/init messages on stderr" no_kernel_text "$RUN_ERR"
}

# 1. Two short lines, one per stream, exact; the console log has what the streams lack.
run_sandbox /dev/null 180 --console-log "$T_TMP/console.log" -- sh -c 'echo out; echo err >&2'
check "echo out / echo err >&2: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
check "stdout is exactly 'out\\n'" file_is "$RUN_OUT" $'out\n'
check "stderr is exactly 'err\\n'" file_is "$RUN_ERR" $'err\n'
check_no_kernel_text "echo out / echo err"
# (Without -v the kernel runs quiet: the log may hold only a few lines.)
check "--console-log got kernel messages ('[ t.tttttt] ...' lines)" has_kernel_text "$T_TMP/console.log"
if [[ $RUN_RC != 0 ]] || ! file_is "$RUN_OUT" $'out\n' || ! file_is "$RUN_ERR" $'err\n'; then show_run; fi

# 2. 64 MiB of random bytes on stdout (every byte value, no line structure),
# then one line on stderr.
head -c $((64 * 1024 * 1024)) /dev/urandom >big.bin
want=$(sha256sum <big.bin | cut -d' ' -f1)
run_sandbox /dev/null 600 -- sh -c 'cat big.bin; echo done >&2'
got=$(sha256sum <"$RUN_OUT" | cut -d' ' -f1)
size=$(stat -c %s "$RUN_OUT")
echo "  64 MiB through stdout in ${RUN_SECS}s"
check "cat big.bin: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
check "cat big.bin: stdout has 67108864 bytes (got $size)" test "$size" = 67108864
check "cat big.bin: stdout keeps the sha256 ($want, got $got)" test "$got" = "$want"
check "cat big.bin: stderr is exactly 'done\\n'" file_is "$RUN_ERR" $'done\n'
[[ $RUN_RC == 0 && $got == "$want" ]] || { echo "---- stderr ----"; tail -n 30 "$RUN_ERR"; }
rm -f big.bin "$RUN_OUT"

# 3. A short stdin with its EOF: wc ends and counts 3 bytes.
printf 'abc' >"$T_TMP/abc"
run_sandbox "$T_TMP/abc" 180 -- wc -c
check "printf abc | wc -c: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
check "printf abc | wc -c: prints 3 (got '$(head -c 100 "$RUN_OUT")')" test "$(tr -d ' \r' <"$RUN_OUT")" = 3
check_no_kernel_text "wc -c"
[[ $RUN_RC == 0 ]] || show_run

# 4. 1 MiB of random bytes in through stdin and back out through stdout.
head -c $((1024 * 1024)) /dev/urandom >"$T_TMP/in.bin"
run_sandbox "$T_TMP/in.bin" 300 -- cat
check "cat < 1 MiB: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
check "cat < 1 MiB: stdout is the input, byte-exact ($(stat -c %s "$RUN_OUT") bytes)" cmp -s "$T_TMP/in.bin" "$RUN_OUT"
check "cat < 1 MiB: stderr is empty" test ! -s "$RUN_ERR"
[[ $RUN_RC == 0 ]] || { echo "---- stderr ----"; tail -n 30 "$RUN_ERR"; }

# 5. -v: kernel and init messages on stderr, never on stdout.
run_sandbox /dev/null 180 -v -- sh -c 'echo out; echo err >&2'
check "-v: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
check "-v: stdout is still exactly 'out\\n'" file_is "$RUN_OUT" $'out\n'
check "-v: stderr shows the kernel messages (Linux version)" grep -aq 'Linux version' "$RUN_ERR"
check "-v: stderr has CMD's line 'err'" grep -aqx $'err\r\\?' "$RUN_ERR"
if [[ $RUN_RC != 0 ]] || ! file_is "$RUN_OUT" $'out\n'; then show_run; fi

finish
