# shellcheck shell=bash
# Helpers for the integration tests (tests/integration/test_*.sh). Each test is
# one ctest test: exit 0 = pass, 1 = fail, 77 = skip (it prints "SKIP: reason").
#
# ctest provides KVMSANDBOX (the binary), KVMSANDBOX_SOURCE_DIR and
# KVMSANDBOX_BUILD_DIR; running a test by hand works too:
#   bash tests/integration/test_boot.sh
set -euo pipefail

T_SOURCE_DIR=${KVMSANDBOX_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)}
T_BUILD_DIR=${KVMSANDBOX_BUILD_DIR:-$T_SOURCE_DIR/build}
T_NAME=$(basename "${0%.sh}")

# A scratch directory, removed when the test exits.
T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/kvmsandbox-$T_NAME.XXXXXX")
trap 'rm -rf "$T_TMP"' EXIT

skip() {
    echo "SKIP: $*"
    exit 77
}

fail() {
    echo "FAIL: $*"
    exit 1
}

pass() {
    echo "PASS: $T_NAME"
    exit 0
}

# check COND_DESCRIPTION CMD...: run CMD; on failure record (not exit) a failure.
T_FAILURES=0
check() {
    local what=$1
    shift
    if "$@"; then
        echo "ok: $what"
    else
        echo "FAIL: $what"
        T_FAILURES=$((T_FAILURES + 1))
    fi
}

# finish: exit 1 if any check failed, else 0.
finish() {
    if ((T_FAILURES > 0)); then
        echo "FAIL: $T_NAME: $T_FAILURES check(s) failed"
        exit 1
    fi
    pass
}

# The kvmsandbox binary: $KVMSANDBOX, else the build directory's.
KVMSANDBOX=${KVMSANDBOX:-$T_BUILD_DIR/kvmsandbox}
[[ -x $KVMSANDBOX ]] || fail "kvmsandbox binary not found at $KVMSANDBOX (build it: scripts/setup.sh)"

# find_kernel: a stock guest kernel: $KVMSANDBOX_KERNEL, else the newest
# /boot/vmlinuz-* whose modules include 9p. Prints its path; returns 1 if none.
find_kernel() {
    if [[ -n ${KVMSANDBOX_KERNEL:-} ]]; then
        [[ -r $KVMSANDBOX_KERNEL ]] || return 1
        printf '%s\n' "$KVMSANDBOX_KERNEL"
        return 0
    fi
    local k v ext
    while IFS= read -r k; do
        [[ -r $k ]] || continue
        v=${k#/boot/vmlinuz-}
        for ext in .ko .ko.xz .ko.zst .ko.gz; do
            if [[ -f /lib/modules/$v/kernel/fs/9p/9p$ext ]]; then
                printf '%s\n' "$k"
                return 0
            fi
        done
    done < <(compgen -G '/boot/vmlinuz-*' | sort -V -r)
    return 1
}

# kvm_usable: can this machine's /dev/kvm boot a stock kernel? (It exists and
# is not the paravirtual kvm_pvm.) kvm_why_not prints the reason when not.
kvm_usable() {
    [[ -c ${KVMSANDBOX_KVM_DEVICE:-/dev/kvm} && ! -d /sys/module/kvm_pvm ]]
}
kvm_why_not() {
    if [[ ! -c ${KVMSANDBOX_KVM_DEVICE:-/dev/kvm} ]]; then
        echo "no ${KVMSANDBOX_KVM_DEVICE:-/dev/kvm} on this machine"
    elif [[ -d /sys/module/kvm_pvm ]]; then
        echo "this machine's /dev/kvm is PVM (kvm_pvm), which cannot boot a stock kernel; scripts/test.sh runs this test in a TCG-hosted VM"
    fi
}

# build_initramfs OUT [SCRIPT]: see scripts/build-test-initramfs.sh.
build_initramfs() {
    bash "$T_SOURCE_DIR/scripts/build-test-initramfs.sh" "$@" || fail "cannot build the test initramfs"
}

# run_vmm SECONDS ARGS...: run "$KVMSANDBOX ARGS..." with a hard time limit and
# no stdin. Sets RUN_RC, and RUN_OUT / RUN_ERR (files with stdout / stderr).
# A run that hits the limit has RUN_RC=124 (and is killed 10 s later if needed).
T_RUN_SEQ=0
run_vmm() {
    local limit=$1
    shift
    T_RUN_SEQ=$((T_RUN_SEQ + 1))
    RUN_OUT=$T_TMP/run$T_RUN_SEQ.out
    RUN_ERR=$T_TMP/run$T_RUN_SEQ.err
    RUN_RC=0
    echo "+ kvmsandbox $* (limit ${limit}s)"
    timeout -k 10 "$limit" "$KVMSANDBOX" "$@" </dev/null >"$RUN_OUT" 2>"$RUN_ERR" || RUN_RC=$?
    echo "  exit $RUN_RC"
}

# show_run: print the last run's output, for the log.
show_run() {
    echo "---- stdout ----"
    tr -d '\r' <"$RUN_OUT" | tail -n 60
    echo "---- stderr ----"
    tail -n 30 "$RUN_ERR"
    echo "----------------"
}

# line_count FILE: the number of lines (a last line without newline counts).
line_count() {
    awk 'END { print NR }' "$1"
}

# expect_one_line_error WHAT RC_WANTED PATTERN: the last run exited RC_WANTED and
# wrote exactly one line on stderr, matching the extended regex PATTERN (case-insensitive).
expect_one_line_error() {
    local what=$1 want=$2 pattern=$3 n
    n=$(line_count "$RUN_ERR")
    check "$what: exit $want (got $RUN_RC)" test "$RUN_RC" = "$want"
    check "$what: exactly one line on stderr (got $n)" test "$n" = 1
    check "$what: stderr matches /$pattern/" grep -Eqi -- "$pattern" "$RUN_ERR"
    if [[ $RUN_RC != "$want" || $n != 1 ]] || ! grep -Eqi -- "$pattern" "$RUN_ERR"; then
        show_run
    fi
}

# ---- helpers for the sandbox tests (test_sandbox_*.sh) ----

# run_sandbox STDIN SECONDS ARGS...: like run_vmm, with stdin from the file
# STDIN (/dev/null for none), in the current directory. Also sets RUN_SECS
# (wall-clock seconds, integer). T_RUN_WRAP (an array, default empty) is put in
# front of the kvmsandbox command, e.g. (setpriv --reuid=...).
T_RUN_WRAP=()
run_sandbox() {
    local in=$1 limit=$2 t0
    shift 2
    T_RUN_SEQ=$((T_RUN_SEQ + 1))
    RUN_OUT=$T_TMP/run$T_RUN_SEQ.out
    RUN_ERR=$T_TMP/run$T_RUN_SEQ.err
    RUN_RC=0
    echo "+ (cd $PWD; ${T_RUN_WRAP[*]:+${T_RUN_WRAP[*]} }kvmsandbox $* <$in) (limit ${limit}s)"
    t0=$(date +%s)
    timeout -k 10 "$limit" "${T_RUN_WRAP[@]}" "$KVMSANDBOX" "$@" <"$in" >"$RUN_OUT" 2>"$RUN_ERR" || RUN_RC=$?
    RUN_SECS=$(($(date +%s) - t0))
    echo "  exit $RUN_RC after ${RUN_SECS}s"
}

# has_kernel_text FILE: FILE holds kernel or init console messages
# ("[    0.000000] ..." lines, "Linux version").
has_kernel_text() {
    LC_ALL=C grep -aEq '^\[ *[0-9]+\.[0-9]+\]|Linux version' "$1"
}

# no_kernel_text FILE: the opposite, for check.
no_kernel_text() {
    ! has_kernel_text "$1"
}

# file_is FILE TEXT: FILE's bytes are exactly TEXT (printf %s, so "out\n" needs $'out\n').
file_is() {
    cmp -s -- "$1" <(printf '%s' "$2")
}

# not_grep PATTERN FILE: FILE has no line matching the fixed string PATTERN.
not_grep() {
    ! LC_ALL=C grep -aqF -- "$1" "$2"
}

# wait_for_file FILE PID [TRIES]: poll every 0.2 s (TRIES times, default 900)
# until FILE exists or process PID has ended. Returns 1 if FILE never came.
wait_for_file() {
    local i
    for ((i = 0; i < ${3:-900}; i++)); do
        [[ -e $1 ]] && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.2
    done
    [[ -e $1 ]]
}

# ---- helpers for the network tests ----

# free_port: a TCP port nobody listens on (from the kernel's own choice).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

# start_httpd DIR FILE: busybox httpd serving DIR on 127.0.0.1 (loopback only:
# a guest reaches it only through slirp's gateway), answering for DIR/FILE
# before it returns. Sets HTTPD_PID (kill it on exit) and HPORT.
start_httpd() {
    local bb
    bb=$(command -v busybox) || fail "busybox is not installed"
    HPORT=$(free_port)
    "$bb" httpd -f -p "127.0.0.1:$HPORT" -h "$1" &
    HTTPD_PID=$!
    for _ in $(seq 50); do
        "$bb" wget -q -O /dev/null "http://127.0.0.1:$HPORT/$2" 2>/dev/null && return 0
        sleep 0.1
    done
    fail "the host's test HTTP server did not start"
}
