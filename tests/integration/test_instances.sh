#!/usr/bin/env bash
# The control plane: two named instances at once; list, pause/resume (a guest
# counter stops and restarts, the guest's wall clock is the host's again), stat (counters move), balloon (the guest's
# MemTotal drops by the inflated size and comes back), debug, stop (graceful,
# socket removed), stop --all; a name in use is refused; an unknown name is
# one line and a non-zero exit; a SIGKILLed VM's stale socket is cleaned by
# the next list.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"

export KVMSANDBOX_INSTANCE_DIR=$T_TMP/instances
K=$KVMSANDBOX
work=$T_TMP/work
mkdir -p "$work"
cd "$work" || exit 1

declare -A PIDS=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T_TMP"
}
trap cleanup EXIT

# The guest side: a counter and the guest's MemTotal, published into the
# share every 0.2 s; SIGTERM (what `stop` forwards) ends it cleanly.
cat >guest.sh <<'EOF'
n=$1 i=0
trap 'echo bye >"stopped.$n"; exit 0' TERM
while :; do
    i=$((i + 1))
    date +%s >"t.$n.tmp" && mv "t.$n.tmp" "t.$n"
    echo "$i" >"c.$n.tmp" && mv "c.$n.tmp" "c.$n"
    grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2 >"m.$n.tmp" && mv "m.$n.tmp" "m.$n"
    # On cue (the host creates ask.N): the guest's wall clock, in ns.
    if [ -e "ask.$n" ]; then
        date +%s%N >"now.$n.tmp" && rm -f "ask.$n" && mv "now.$n.tmp" "now.$n"
    fi
    sleep 0.2
done
EOF

# start NAME [OPTIONS...]: an instance running guest.sh in the background.
start() {
    local n=$1
    shift
    "$K" --name "$n" --cpus 1 --mem 512M "$@" -- sh guest.sh "$n" </dev/null >"$n.out" 2>"$n.err" &
    PIDS[$n]=$!
}
# wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < end)) || return 1
        sleep 0.2
    done
}
counter() { cat "c.$1" 2>/dev/null || echo 0; }
# stamp N: the guest's last `date +%s` and the host's clock when it was written
# (the file's mtime, set by the host), read as one pair (t.N is replaced by
# rename, a new inode each time).
stamp() {
    local a b v
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        a=$(stat -c '%i %Y' "t.$1") v=$(cat "t.$1") b=$(stat -c '%i %Y' "t.$1")
        [[ $a == "$b" ]] && break
    done
    echo "$v ${b#* }"
}
memtotal() { cat "m.$1" 2>/dev/null || echo 0; }
running() { [[ -s c.$1 ]]; }
socket_gone() { [[ ! -e $KVMSANDBOX_INSTANCE_DIR/$1.sock ]]; }
one_line_err() { [[ $(wc -l <"$1") == 1 ]]; }

# One boots after the other: two kernels booting at once inside the
# TCG-hosted VM sometimes crash (QEMU's emulated nested SVM), which would say
# nothing about kvmsandbox. They then run at the same time.
start alpha --balloon
wait_for 240 running alpha
start beta
if ! wait_for 240 running alpha || ! wait_for 240 running beta; then
    echo "---- alpha.err ----"; cat alpha.err; echo "---- beta.err ----"; cat beta.err
    fail "the instances did not start within 240 s"
fi
echo "both guests run"

# list: both, running.
"$K" list >list.txt 2>&1
cat list.txt
check "list shows alpha running" grep -Eq '^alpha +[0-9]+ +running' list.txt
check "list shows beta running" grep -Eq '^beta +[0-9]+ +running' list.txt
"$K" list --json >list.json
check "list --json has both with their pids" \
    grep -q "\"name\":\"alpha\",\"kind\":\"sandbox\",\"pid\":${PIDS[alpha]}" list.json
check "list --json has beta" grep -q "\"name\":\"beta\"" list.json

# A name in use is refused at start, at once, in one line.
rc=0
timeout 60 "$K" --name alpha -- true </dev/null >dup.out 2>dup.err || rc=$?
cat dup.err
check "a second 'alpha' exits 125 (got $rc)" test "$rc" = 125
check "... with one line naming the clash" grep -q "already running" dup.err
check "... in one line" one_line_err dup.err

# An unknown name: one line, non-zero.
for cmd in "stat nosuch" "pause nosuch" "stop nosuch" "debug nosuch" "balloon nosuch inflate 1M"; do
    rc=0
    # shellcheck disable=SC2086 # the words of $cmd are meant to split
    "$K" $cmd >unk.out 2>unk.err || rc=$?
    check "$cmd: non-zero exit (got $rc), one line: $(head -c 200 unk.err)" \
        bash -c "[[ $rc != 0 ]] && [[ \$(wc -l <unk.err) == 1 ]] && grep -q nosuch unk.err"
done

# stat: counters move while the guest runs (its 9p requests: it writes files;
# its vCPUs rarely exit to us, notifications and interrupts bypass us).
p9reqs() { "$K" stat --json "$1" | grep -o '"requests":[0-9]*' | cut -d: -f2 | awk '{s += $1} END {print s + 0}'; }
"$K" stat alpha >stat.txt 2>&1
cat stat.txt
check "stat names the devices (console, 9p, balloon)" \
    bash -c 'grep -q "^console:" stat.txt && grep -q "^9p:" stat.txt && grep -q "^balloon:" stat.txt'
e1=$(p9reqs alpha)
sleep 2
e2=$(p9reqs alpha)
check "stat: the 9p request counters grow while the guest runs ($e1 -> $e2)" test "$e2" -gt "$e1"
check "stat: the VMM's resident memory is reported" bash -c "\"$K\" stat --json alpha | grep -Eq '\"vmm_rss_bytes\":[1-9]'"

# pause: alpha's counter stands still, beta's goes on; resume: alpha moves again.
check "pause alpha" "$K" pause alpha
a1=$(counter alpha) b1=$(counter beta)
read -r gt1 ht1 < <(stamp alpha)
ino1=$(stat -c %i t.alpha)
sleep 3
a2=$(counter alpha) b2=$(counter beta)
check "paused alpha's counter stays ($a1 -> $a2)" test "$a1" = "$a2"
check "beta's counter goes on meanwhile ($b1 -> $b2)" test "$b2" -gt "$b1"
"$K" list >list2.txt
check "list shows alpha paused" grep -Eq '^alpha +[0-9]+ +paused' list2.txt
p1=$(p9reqs alpha)
sleep 1
p2=$(p9reqs alpha)
check "no 9p requests while paused ($p1 -> $p2)" test "$p1" = "$p2"
check "resume alpha" "$K" resume alpha
check "alpha's counter moves again after resume" wait_for 30 bash -c "(( \$(cat c.alpha) > $a2 ))"
# A reading taken after the resume (the one before may have been written just
# before the pause, its iteration finishing only now).
check "alpha writes its clock again after resume" \
    wait_for 30 bash -c "[[ \$(stat -c %i t.alpha) != $ino1 ]]"
read -r gt2 ht2 < <(stamp alpha)
# Not wildly: never backwards, never more than the host's own clock moved
# between the two readings (the host's clock taken when the guest wrote them:
# under emulation the guest's last reading before the pause may be seconds
# old, and since resume sends the host's time the guest's clock catches up).
check "the guest clock did not jump over the pause (guest $gt1 -> $gt2, host $ht1 -> $ht2)" \
    bash -c "(( $gt2 >= $gt1 && $gt2 - $gt1 <= $ht2 - $ht1 + 1 ))"
# Times are exact across a pause: the paused kvmclock resumes where it
# stopped, so the host sends the time again at resume. The guest's clock,
# read on cue, lies between the host's before the cue and after its answer
# (100 ms of slack below; a lost pause would be ~3 s behind).
rm -f now.alpha
h0=$(date +%s%N)
touch ask.alpha
wait_for 30 test -e now.alpha
h1=$(date +%s%N)
g=$(cat now.alpha 2>/dev/null || echo 0)
echo "  after resume: host $h0 | guest $g | host $h1 (guest - host $(((g - h0) / 1000000)) ms)"
check "the guest's wall clock after resume is the host's (within 100 ms)" \
    bash -c "(( $h0 - 100000000 <= $g && $g <= $h1 ))"
rc=0
"$K" resume alpha >/dev/null 2>res.err || rc=$?
check "resume of a running instance fails with one line (rc $rc)" \
    bash -c "[[ $rc != 0 ]] && [[ \$(wc -l <res.err) == 1 ]]"

# debug: registers of the vCPU.
"$K" debug alpha >debug.txt 2>&1
check "debug prints vCPU 0's rip and cr3" bash -c 'grep -q "vCPU 0" debug.txt && grep -q "rip 0x" debug.txt && grep -q "cr3 0x" debug.txt'
check "alpha still runs after debug" wait_for 30 bash -c "(( \$(cat c.alpha) > $(counter alpha) ))"

# balloon: inflate 64M lowers MemTotal by 64 MiB (65536 kB); deflate restores it.
m0=$(memtotal alpha)
check "balloon alpha inflate 64M" "$K" balloon alpha inflate 64M
check "the guest's MemTotal drops by 64 MiB (from $m0 kB)" \
    wait_for 60 bash -c "(( \$(cat m.alpha) <= $m0 - 65536 + 64 ))"
echo "  MemTotal after inflate: $(memtotal alpha) kB"
"$K" stat alpha | grep balloon
check "balloon alpha deflate 64M" "$K" balloon alpha deflate 64M
check "the guest's MemTotal is back to $m0 kB" wait_for 60 bash -c "(( \$(cat m.alpha) >= $m0 ))"
if ! kill -0 "${PIDS[beta]}" 2>/dev/null; then
    echo "---- beta.err ----"; tail -n 20 beta.err
fi
check "beta is still running" kill -0 "${PIDS[beta]}"
rc=0
"$K" balloon beta inflate 64M >/dev/null 2>bal.err || rc=$?
check "balloon on an instance without --balloon: one line, non-zero ($(cat bal.err))" \
    bash -c "[[ $rc != 0 ]] && grep -q -- --balloon bal.err"

# stop: graceful (CMD gets SIGTERM, its trap ends it), within the grace period.
t0=$SECONDS
check "stop alpha" "$K" stop alpha
rc=0
wait "${PIDS[alpha]}" || rc=$?
unset 'PIDS[alpha]'
check "alpha ended within the grace period ($((SECONDS - t0)) s)" test $((SECONDS - t0)) -le 20
check "alpha's CMD got SIGTERM and ended by itself (exit $rc)" \
    bash -c "[[ $rc == 0 && -e stopped.alpha ]]"
check "alpha's socket is gone" socket_gone alpha

# stop --all ends beta; list then shows none.
check "stop --all" "$K" stop --all
rc=0
wait "${PIDS[beta]}" || rc=$?
unset 'PIDS[beta]'
check "beta ended (exit $rc)" test "$rc" = 0
"$K" list >list4.txt
check "list shows no instance after stop --all" test "$(wc -l <list4.txt)" = 1

# SIGKILL leaves a stale socket; the next list removes it and does not show it.
# (Alone, for the same reason as the staggered start above.)
start gamma
wait_for 240 running gamma || fail "gamma did not start"
kill -9 "${PIDS[gamma]}"
wait "${PIDS[gamma]}" 2>/dev/null || true  # 137: it was SIGKILLed
unset 'PIDS[gamma]'
check "a SIGKILLed instance leaves its socket behind" test -S "$KVMSANDBOX_INSTANCE_DIR/gamma.sock"
"$K" list >list3.txt 2>&1
cat list3.txt
check "list does not show the dead gamma" not_grep gamma list3.txt
check "list removed gamma's stale socket" socket_gone gamma

check "no socket left in the instance directory" \
    bash -c "! compgen -G '$KVMSANDBOX_INSTANCE_DIR/*.sock' >/dev/null"

finish
