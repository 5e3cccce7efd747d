#!/usr/bin/env bash
# kvmsandbox -- CMD: --timeout, SIGINT/SIGTERM, and nothing left behind
# (README.md, "Running a command"):
#  1. --timeout 5 -- sleep 100 ends after about 5 s with exit 124;
#  2. SIGINT to kvmsandbox while CMD (sleep) runs: exit 130 within 20 s;
#  3. SIGTERM is forwarded to CMD: a CMD that traps it reports so and its own
#     exit status (7) becomes ours;
# after each: no process of the run remains, no new kvmsandbox* file in the
# temp directories, no new mount.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
command -v perl >/dev/null || skip "no perl (used to see how kvmsandbox ended)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"

work=$T_TMP/work
mkdir -p "$work"
cd "$work" || exit 1

# temp_entries: kvmsandbox* entries in the temp directories, except the test
# scripts' own scratch directories (kvmsandbox-test_*, see lib.sh).
temp_entries() {
    local d
    for d in $(printf '%s\n' "${TMPDIR:-/tmp}" /tmp /var/tmp /dev/shm /run | sort -u); do
        [[ -d $d ]] || continue
        find "$d" -maxdepth 1 -name 'kvmsandbox*' ! -name 'kvmsandbox-test_*' 2>/dev/null
    done | sort
}
mounts() { sort /proc/self/mounts; }

# start_bg ARGS...: start kvmsandbox ARGS... in the background, in a session of
# its own (so that signals reach only it, and its processes are easy to find),
# under a small perl reaper that records how it ended ("exit N" or "signal N":
# bash's wait cannot tell a status 130 from a death by SIGINT). SIGINT and
# SIGQUIT get their default action back (bash ignores them in background jobs).
# Sets BG_PID (kvmsandbox), BG_SID (the reaper, session leader), BG_OUT,
# BG_ERR, BG_T0.
start_bg() {
    local i
    T_RUN_SEQ=$((T_RUN_SEQ + 1))
    BG_OUT=$T_TMP/run$T_RUN_SEQ.out
    BG_ERR=$T_TMP/run$T_RUN_SEQ.err
    BG_STATUS=$T_TMP/run$T_RUN_SEQ.status
    BG_PIDFILE=$T_TMP/run$T_RUN_SEQ.pid
    BG_TEMP_BEFORE=$(temp_entries)
    BG_MOUNTS_BEFORE=$(mounts)
    rm -f "$work/started"
    echo "+ (cd $PWD; setsid kvmsandbox $* &)"
    # shellcheck disable=SC2016 # perl code
    setsid perl -e '
        my ($pidfile, $statusfile, @cmd) = @ARGV;
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            $SIG{INT} = $SIG{QUIT} = "DEFAULT";
            exec { $cmd[0] } @cmd or exit 127;
        }
        open(my $f, ">", $pidfile) or die; print $f "$pid\n"; close $f;
        waitpid($pid, 0);
        my $s = $?;
        open($f, ">", $statusfile) or die;
        print $f (($s & 127) ? "signal " . ($s & 127) : "exit " . ($s >> 8)), "\n";
        close $f;
        exit(($s & 127) ? 128 + ($s & 127) : $s >> 8);
    ' "$BG_PIDFILE" "$BG_STATUS" "$KVMSANDBOX" "$@" </dev/null >"$BG_OUT" 2>"$BG_ERR" &
    BG_SID=$!
    BG_T0=$(date +%s)
    BG_PID=""
    for ((i = 0; i < 100; i++)); do
        [[ -s $BG_PIDFILE ]] && { BG_PID=$(<"$BG_PIDFILE"); break; }
        sleep 0.1
    done
    [[ -n $BG_PID ]] || fail "the perl reaper did not start kvmsandbox"
}

# wait_bg LIMIT: wait up to LIMIT seconds for the background run; sets BG_RC
# (kvmsandbox's exit status, "signal N" when a signal killed it, or
# "still-running", after which the session is killed) and BG_SECS (seconds
# since start_bg).
wait_bg() {
    local limit=$1 t0
    t0=$(date +%s)
    while kill -0 "$BG_SID" 2>/dev/null && [[ $(ps -o stat= -p "$BG_SID" 2>/dev/null) != Z* ]]; do
        if (($(date +%s) - t0 >= limit)); then
            echo "  still running after ${limit}s: killing its session"
            kill -KILL -- "-$BG_SID" 2>/dev/null || true
            wait "$BG_SID" 2>/dev/null || true
            BG_RC=still-running
            BG_SECS=$(($(date +%s) - BG_T0))
            return
        fi
        sleep 0.2
    done
    wait "$BG_SID" 2>/dev/null || true
    BG_RC=$(cat "$BG_STATUS" 2>/dev/null || echo "unknown")
    BG_RC=${BG_RC#exit }
    BG_SECS=$(($(date +%s) - BG_T0))
    echo "  kvmsandbox: $([[ $BG_RC == signal* ]] && echo "killed by $BG_RC" || echo "exit $BG_RC") after ${BG_SECS}s"
}

# session_procs: processes left in the background run's session.
session_procs() {
    ps -e -o pid=,sid=,args= | awk -v s="$BG_SID" '$2 == s'
}

# check_nothing_left WHAT: after a background run.
check_nothing_left() {
    local left after
    sleep 1
    left=$(session_procs)
    check "$1: no process of the run remains${left:+ (left: $left)}" test -z "$left"
    after=$(comm -13 <(printf '%s\n' "$BG_TEMP_BEFORE") <(temp_entries) | sed '/^$/d')
    check "$1: no new kvmsandbox* entry in the temp directories${after:+ (new: $after)}" test -z "$after"
    after=$(comm -13 <(printf '%s\n' "$BG_MOUNTS_BEFORE") <(mounts) | sed '/^$/d')
    check "$1: no new mount${after:+ (new: $after)}" test -z "$after"
    if [[ -n $left ]]; then kill -KILL -- "-$BG_SID" 2>/dev/null || true; fi
}

show_bg() {
    echo "---- stdout ----"
    tr -d '\r' <"$BG_OUT" | tail -n 20
    echo "---- stderr ----"
    tail -n 20 "$BG_ERR"
    echo "----------------"
}

# wait_started LIMIT: wait for the command to create ./started; 0 when it did.
wait_started() {
    local i
    for ((i = 0; i < $1 * 5; i++)); do
        [[ -e $work/started ]] && return 0
        kill -0 "$BG_SID" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

# ---------------------------------------------------------------- 1. --timeout
start_bg --timeout 5 -- sleep 100
wait_bg 120
check "--timeout 5 -- sleep 100: exit status 124 (got $BG_RC)" test "$BG_RC" = 124
check "--timeout 5: ended after 4..30 s (took ${BG_SECS}s)" test "$BG_SECS" -ge 4 -a "$BG_SECS" -le 30
check_nothing_left "--timeout"
[[ $BG_RC == 124 ]] || show_bg

# ---------------------------------------------------------------- 2. SIGINT
start_bg -- sh -c 'touch started; exec sleep 100'
if wait_started 120; then
    echo "  CMD started after $(($(date +%s) - BG_T0))s; sending SIGINT to kvmsandbox ($BG_PID: $(cat "/proc/$BG_PID/comm" 2>/dev/null))"
    check "SIGINT: the pid signalled is kvmsandbox itself" test "$(cat "/proc/$BG_PID/comm" 2>/dev/null)" = kvmsandbox
    t_sig=$(date +%s)
    kill -INT "$BG_PID"
    wait_bg 20
    echo "  ended $(($(date +%s) - t_sig))s after SIGINT"
    check "SIGINT: kvmsandbox exits with status 130 = 128+SIGINT within 20 s, not killed by the signal (got $BG_RC)" test "$BG_RC" = 130
else
    wait_bg 1
    check "SIGINT: the command started (./started appeared) within 120 s" false
fi
check_nothing_left "SIGINT"
[[ $BG_RC == 130 ]] || show_bg

# ---------------------------------------------------------------- 3. SIGTERM, forwarded
# shellcheck disable=SC2016 # for the guest shell
start_bg -- sh -c 'trap "echo got-TERM; exit 7" TERM; touch started; sleep 100 & wait'
if wait_started 120; then
    echo "  CMD started after $(($(date +%s) - BG_T0))s; sending SIGTERM to kvmsandbox ($BG_PID)"
    t_sig=$(date +%s)
    kill -TERM "$BG_PID"
    wait_bg 20
    echo "  ended $(($(date +%s) - t_sig))s after SIGTERM"
    check "SIGTERM: kvmsandbox ended within 20 s, not killed by the signal itself (got $BG_RC)" \
        test "$BG_RC" != still-running -a "$BG_RC" != "signal 15"
    check "SIGTERM reached CMD: its trap printed got-TERM" grep -aq '^got-TERM' "$BG_OUT"
    check "SIGTERM: CMD's own exit status 7 is ours (got $BG_RC)" test "$BG_RC" = 7
else
    wait_bg 1
    check "SIGTERM: the command started (./started appeared) within 120 s" false
fi
check_nothing_left "SIGTERM"
[[ $BG_RC == 7 ]] || show_bg

finish
