#!/usr/bin/env bash
# test.sh: the project's whole test run, as CI runs it (bash .ci/run).
#
#   0. scripts/setup.sh        packages (only when missing) and the build in build/
#   1. unit                    ctest -L unit in build/
#   2. asan                    unit tests again in build-asan/ (ASan+UBSan, Debug)
#   3. integration             ctest -L integration: on this host when its /dev/kvm
#                              can boot a stock kernel, else inside TCG-hosted VMs
#                              (scripts/kvm-in-tcg.sh), one per host core, sharing
#                              one queue of tests; tests labelled "host" always
#                              run on the host
#   4. fuzz-smoke              ctest -L fuzz-smoke, if there are such tests
#
# The last line is "summary: N passed, N failed, N skipped" over all stages;
# the exit status is non-zero when anything failed. Skipped tests print their
# reason. Never reads stdin.
#
# Env: KVMSANDBOX_TEST_STAGES   subset of "unit asan integration fuzz-smoke" (default: all)
#      KVMSANDBOX_TEST_FORCE_TCG=1   run integration tests in the TCG VM even on a real KVM
#      KVMSANDBOX_TCG_TIMEOUT   seconds for each TCG VM (default 3600)
#      KVMSANDBOX_TCG_VMS       TCG VMs run side by side (default: nproc)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=scripts/lib/common.sh
. "$root/scripts/lib/common.sh"
cd "$root"

build=$root/build
asan_build=$root/build-asan
results=$build/test-results
stages=" ${KVMSANDBOX_TEST_STAGES:-unit asan integration fuzz-smoke} "

passed=0 failed=0 skipped=0
declare -a failures=() skips=() notes=()

banner() { printf '\n==== %s ====\n' "$*"; }
want() { [[ $stages == *" $1 "* ]]; }

finish() {
    banner "results"
    local s
    if [[ ${#skips[@]} -gt 0 ]]; then
        echo "skipped:"
        for s in "${skips[@]}"; do echo "  $s"; done
    fi
    if [[ ${#notes[@]} -gt 0 ]]; then
        echo "notes:"
        for s in "${notes[@]}"; do echo "  $s"; done
    fi
    if [[ ${#failures[@]} -gt 0 ]]; then
        echo "failed:"
        for s in "${failures[@]}"; do echo "  $s"; done
    fi
    echo "summary: $passed passed, $failed failed, $skipped skipped"
    if ((failed > 0)); then exit 1; fi
    exit 0
}

stage_failed() {
    failed=$((failed + 1))
    failures+=("$1")
}

# junit_attr FILE NAME: an attribute of the <testsuite> element of a CTest JUnit file.
junit_attr() {
    sed -n "s/.*[[:space:]]$2=\"\([0-9]*\)\".*/\1/p" "$1" | head -n 1
}

# tally STAGE JUNIT CTEST_RC: add a ctest run's counts; list its skips (with the
# "SKIP: reason" lines the tests printed) and failures.
tally() {
    local stage=$1 junit=$2 rc=$3 t f s d line
    if [[ ! -s $junit ]]; then
        stage_failed "$stage: ctest produced no results (exit $rc)"
        return
    fi
    t=$(junit_attr "$junit" tests)
    f=$(junit_attr "$junit" failures)
    s=$(junit_attr "$junit" skipped)
    d=$(junit_attr "$junit" disabled)
    t=${t:-0} f=${f:-0} s=$((${s:-0} + ${d:-0}))
    passed=$((passed + t - f - s))
    failed=$((failed + f))
    skipped=$((skipped + s))
    while IFS= read -r line; do
        case $line in
            skip*) skips+=("$stage: ${line#skip }") ;;
            fail*) failures+=("$stage: ${line#fail }") ;;
        esac
    done < <(awk '
        function unxml(s) { gsub(/&lt;/, "<", s); gsub(/&gt;/, ">", s); gsub(/&quot;/, "\"", s); gsub(/&apos;/, "\047", s); gsub(/&amp;/, "\\&", s); return s }
        function flush() { if (name != "" && status == "notrun") print "skip " name ": " (reason != "" ? reason : "(no reason printed)") }
        /<testcase / {
            flush()
            name = $0; sub(/.*<testcase name="/, "", name); sub(/".*/, "", name); name = unxml(name)
            status = $0; sub(/.*status="/, "", status); sub(/".*/, "", status)
            reason = ""
            if (status == "fail") print "fail " name
        }
        # GoogleTest: "file:line: Skipped" then the message.
        grab { if ($0 !~ /^\[/ && reason == "") reason = unxml($0); grab = 0 }
        /: Skipped$/ { if (status == "notrun") grab = 1 }
        /SKIP:/ { if (status == "notrun") { r = $0; sub(/.*SKIP:[[:space:]]*/, "", r); r = unxml(r); reason = (reason == "" ? r : reason "; " r) } }
        END { flush() }' "$junit")
    if [[ $rc != 0 && $f == 0 ]]; then
        stage_failed "$stage: ctest exited $rc"
    fi
}

# run_ctest STAGE BUILD_DIR [CTEST ARGS...]
run_ctest() {
    local stage=$1 dir=$2 junit rc=0
    shift 2
    junit=$results/$stage.xml
    rm -f "$junit"
    ctest --test-dir "$dir" --output-on-failure --output-junit "$junit" "$@" </dev/null || rc=$?
    if [[ -s $junit && $(junit_attr "$junit" tests) == 0 ]]; then
        echo "(no tests in this stage)"
    fi
    tally "$stage" "$junit" "$rc"
}

# ---- integration tests inside TCG-hosted VMs ----
# Several VMs (one per host core: each emulated vCPU is one busy host thread)
# take tests from one queue (scripts/lib/tcg-worker.sh), longest first. An
# emulated machine can freeze as a whole (kvm-in-tcg.sh exits 123 when its
# heartbeat stops): that says nothing about our tests, so the tests it had
# taken and not finished go back to the queue and a fresh VM takes over, and
# the run says so.
tcg_queue=$results/tcg-queue

# tcg_unclaimed: is any test of the queue not taken yet?
tcg_unclaimed() {
    local name
    while IFS= read -r name; do
        [[ -L $tcg_queue/claims/$name ]] || return 0
    done <"$tcg_queue/order"
    return 1
}

# tcg_slot SLOT: one VM after another in this slot until the queue is done.
# A VM retires after KVMSANDBOX_TCG_VM_LIFE seconds of uptime (it takes no new
# test then): every freeze seen so far came after 1150-1350 s of uptime, in
# the middle of any test, and a fresh VM costs half a minute.
tcg_slot() {
    local slot=$1 vm=0 freezes=0 rc start c name log
    while :; do
        vm=$((vm + 1))
        start=$SECONDS
        rc=0
        log=$results/tcg-console-$slot-$vm.log
        # One vCPU: with two, QEMU's emulated nested SVM (7.2) sometimes
        # crashes the VM's kernel or a nested guest when two nested guests
        # run at once (measured: several failures in 6 rounds; none in
        # 3 rounds with one vCPU, which was also no slower).
        KVM_IN_TCG_CACHE=${KVM_IN_TCG_CACHE:-$build/kvm-in-tcg} \
            bash "$root/scripts/kvm-in-tcg.sh" --timeout "${KVMSANDBOX_TCG_TIMEOUT:-3600}" \
            --stall 120 --cpus "${KVMSANDBOX_TCG_CPUS:-1}" --log "$log" --workdir "$root" \
            --env "KVMSANDBOX_TCG_VM_LIFE=${KVMSANDBOX_TCG_VM_LIFE:-900}" -- \
            bash "$root/scripts/lib/tcg-worker.sh" "$tcg_queue" "$build" "$slot" </dev/null || rc=$?
        echo "(TCG VM $slot.$vm: $((SECONDS - start)) s, exit $rc; console log: $log)"
        if [[ $rc == 123 ]]; then
            freezes=$((freezes + 1))
            for c in "$tcg_queue"/claims/*; do
                [[ -L $c && $(readlink "$c") == "$slot" ]] || continue
                name=${c##*/}
                [[ -s $tcg_queue/junit/$name.xml ]] && continue
                rm -f "$c"
                echo "integration: TCG VM $slot.$vm froze during $name (no heartbeat; console log $log); the test ran again in a fresh VM" >>"$tcg_queue/notes"
            done
            echo "TCG VM $slot.$vm froze; its unfinished tests went back to the queue"
            ((freezes < 3)) || break
        elif [[ $rc != 0 ]]; then
            break
        fi
        tcg_unclaimed || break
    done
    echo "$rc" >"$tcg_queue/rc-$slot"
}

run_tcg_integration() {
    local vms=${KVMSANDBOX_TCG_VMS:-$(nproc)} slot name rc
    local -a pids=() names=()
    ((vms >= 1)) || vms=1
    rm -rf "$tcg_queue"
    mkdir -p "$tcg_queue"/{claims,junit,logs}
    mapfile -t names < <(ctest --test-dir "$build" -L '^integration$' -LE '^host$' -N </dev/null |
        sed -n 's/^ *Test *#[0-9]*: *//p')
    if [[ ${#names[@]} == 0 ]]; then
        stage_failed "integration: ctest lists no integration tests"
        return
    fi
    for name in "${names[@]}"; do
        printf '%s %s\n' "$(awk -v n="$name" '$1 == n { print $2 }' "$root/tests/integration/tcg-seconds.txt")" "$name"
    done | awk '{ if ($2 == "") { $2 = $1; $1 = 100 } print }' | sort -k1,1nr | awk '{ print $2 }' >"$tcg_queue/order"
    echo "${#names[@]} tests, $vms VMs"
    for ((slot = 1; slot <= vms; slot++)); do
        tcg_slot "$slot" &
        pids+=($!)
        # Stagger the boots: both building the harness initramfs at once
        # only wastes a core.
        sleep 5
    done
    wait "${pids[@]}" || true
    if [[ -s $tcg_queue/notes ]]; then
        mapfile -t -O "${#notes[@]}" notes <"$tcg_queue/notes"
    fi
    for name in "${names[@]}"; do
        if [[ -s $tcg_queue/junit/$name.xml ]]; then
            if grep -q 'status="fail"' "$tcg_queue/junit/$name.xml"; then
                echo "---- $name (from $tcg_queue/logs/$name.log) ----"
                tail -n 80 "$tcg_queue/logs/$name.log"
            fi
            tally integration "$tcg_queue/junit/$name.xml" 0
        else
            stage_failed "integration: $name did not run to its end (see the TCG VM lines above and $results/tcg-console-*.log)"
        fi
    done
    for ((slot = 1; slot <= vms; slot++)); do
        rc=$(cat "$tcg_queue/rc-$slot" 2>/dev/null || echo none)
        case $rc in
            0) ;;
            123) notes+=("integration: TCG VM slot $slot stopped after its third freeze") ;;
            124) notes+=("integration: TCG VM $slot hit its time limit (KVMSANDBOX_TCG_TIMEOUT)") ;;
            *) notes+=("integration: TCG VM $slot ended with exit $rc (125: the harness failed, see above)") ;;
        esac
    done
}

# ---- 0. setup and build ----
banner "setup"
if ! bash "$root/scripts/setup.sh" </dev/null; then
    stage_failed "setup: scripts/setup.sh failed (packages or build)"
    finish
fi
mkdir -p "$results"

# ---- 1. unit tests ----
if want unit; then
    banner "unit tests"
    run_ctest unit "$build" -L '^unit$' -j2 --no-tests=error
fi

# ---- 2. unit tests under ASan/UBSan ----
if want asan; then
    banner "unit tests with AddressSanitizer + UndefinedBehaviorSanitizer"
    if cmake -S "$root" -B "$asan_build" -G Ninja -DKVMSANDBOX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug </dev/null >/dev/null \
        && ninja -C "$asan_build" unit_tests </dev/null; then
        run_ctest asan "$asan_build" -L '^unit$' -j2 --no-tests=error
    else
        stage_failed "asan: configuring or building build-asan/unit_tests failed"
    fi
fi

# ---- 3. integration tests ----
if want integration; then
    kvm=$(ks_kvm_status || true)
    if [[ $kvm == ok && -z ${KVMSANDBOX_TEST_FORCE_TCG:-} ]]; then
        banner "integration tests (this host's /dev/kvm)"
        run_ctest integration "$build" -L '^integration$' --no-tests=error
    else
        if [[ -n ${KVMSANDBOX_TEST_FORCE_TCG:-} ]]; then
            why="KVMSANDBOX_TEST_FORCE_TCG is set"
        elif [[ $kvm == pvm ]]; then
            why="this host's /dev/kvm is PVM"
        else
            why="this host has no /dev/kvm"
        fi
        banner "integration tests, host-only ones (label host)"
        run_ctest integration-host "$build" -L '^host$' --no-tests=ignore
        banner "integration tests inside TCG-hosted VMs ($why)"
        run_tcg_integration
    fi
fi

# ---- 4. fuzz smoke tests ----
if want fuzz-smoke; then
    banner "fuzz smoke tests"
    run_ctest fuzz-smoke "$build" -L '^fuzz-smoke$' --no-tests=ignore
fi

finish
