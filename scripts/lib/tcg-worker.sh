#!/usr/bin/env bash
# tcg-worker.sh QUEUE BUILD_DIR SLOT: runs inside one kvm-in-tcg VM and takes
# integration tests from a queue that several such VMs share (scripts/test.sh
# runs one VM per host core, all pulling from the same queue).
#
# QUEUE (a directory on the shared, read-write work mount):
#   order          ctest test names, longest first
#   claims/NAME    a symlink to SLOT: the test was taken by that VM. symlink(2)
#                  fails when the name exists, so two VMs never take one test,
#                  and the host can tell whose tests were lost when a VM froze.
#   junit/NAME.xml ctest's result for the test (written when it ends)
#   logs/NAME.log  ctest's output for the test
#
# Prints one line per test on stdout. Exit status 0 whatever the tests did:
# the host reads the results from junit/.
set -uo pipefail

queue=$1 build=$2 slot=$3

# Env: KVMSANDBOX_TCG_VM_LIFE: seconds of uptime after which this VM takes no
# new test (the host starts a fresh one for the rest).
life=${KVMSANDBOX_TCG_VM_LIFE:-0}

while IFS= read -r name; do
    [[ -n $name ]] || continue
    up=$(cut -d. -f1 /proc/uptime)
    if ((life > 0 && up > life)); then
        echo "[vm$slot] retiring after ${up}s of uptime; a fresh VM takes the rest"
        break
    fi
    ln -s "$slot" "$queue/claims/$name" 2>/dev/null || continue
    t0=$(date +%s)
    ctest --test-dir "$build" -R "^${name//./\\.}\$" --no-tests=error \
        --output-on-failure --output-junit "$queue/junit/$name.xml" \
        </dev/null >"$queue/logs/$name.log" 2>&1
    rc=$?
    if [[ $rc == 0 ]] && grep -q 'Passed' "$queue/logs/$name.log"; then
        what=passed
    elif [[ $rc == 0 ]]; then
        what=skipped
    else
        what=FAILED
    fi
    printf '[vm%s] %-42s %s (%ss)\n' "$slot" "$name" "$what" "$(($(date +%s) - t0))"
done <"$queue/order"
exit 0
