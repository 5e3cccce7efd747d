#!/usr/bin/env bash
# bench.sh [--short]: measures kvmsandbox against the same work on the host,
# in one run, and prints a table plus JSON (build/bench.json).
#
# Where this host's /dev/kvm cannot boot a stock kernel (PVM), the whole
# benchmark runs inside the TCG-hosted VM (scripts/kvm-in-tcg.sh): there both
# the "host" and the guest figures are emulated, so only their ratio means
# anything. --short uses small sizes (seconds, for CI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd -P)
short=0
[[ ${1:-} == --short ]] && short=1

if [[ -z ${KVMSANDBOX_BENCH_INNER:-} ]] && { [[ ! -c /dev/kvm ]] || [[ -d /sys/module/kvm_pvm ]]; }; then
    exec bash scripts/kvm-in-tcg.sh --timeout 3000 --env KVMSANDBOX_BENCH_INNER=1 -- \
        bash scripts/bench.sh "$@"
fi

K=$root/build/kvmsandbox
[[ -x $K ]] || { echo "bench: build first (scripts/setup.sh)" >&2; exit 1; }
# A local directory (tmpfs inside the TCG-hosted VM), so the "host" figures
# measure the host's file system and not the harness's own 9p share.
work=$(mktemp -d "${TMPDIR:-/tmp}/kvmsandbox-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

if ((short)); then size_mb=16 nfiles=1000 runs=1 start_runs=2; else size_mb=256 nfiles=10000 runs=3 start_runs=10; fi
# The big transfers are long enough to time once.
big_runs=$runs
# (In-guest timing keeps even the big transfers short enough to repeat.)

now() { date +%s.%N; }
# time_cmd CMD...: seconds taken by CMD (median of $runs runs, or $n_runs).
time_cmd() {
    local t=() s e i n=${n_runs:-$runs}
    for ((i = 0; i < n; i++)); do
        s=$(now)
        "$@" >/dev/null 2>&1
        e=$(now)
        t+=("$(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.4f", b - a }')")
    done
    printf '%s\n' "${t[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

head -c $((size_mb * 1024 * 1024)) /dev/urandom >big.bin
mkdir -p tree
(cd tree && for ((i = 0; i < nfiles; i++)); do : >"f$i"; done)

# in_guest OP: seconds OP takes inside the VM, timed by the guest's own clock
# (so the VM start is not part of it); median of $runs (or $n_runs) VMs.
in_guest() {
    local t=() i n=${n_runs:-$runs} out
    for ((i = 0; i < n; i++)); do
        out=$("$K" -- sh -c 's=$(date +%s.%N); '"$1"' >/dev/null 2>&1; e=$(date +%s.%N); echo "$s $e"' 2>/dev/null | tail -n 1)
        t+=("$(awk -v l="$out" 'BEGIN { split(l, a, " "); if (a[2] > 0) printf "%.4f", a[2] - a[1]; else print "nan" }')")
    done
    printf '%s\n' "${t[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
# on_host OP: the same, run by sh on the host.
on_host() {
    n_runs=${n_runs:-$runs} time_cmd sh -c "$1"
}

rows=()
add() {  # name host guest [unit-size-MiB]
    local ratio
    ratio=$(awk -v h="$2" -v g="$3" 'BEGIN { printf "%.1f", (h > 0 ? g / h : 0) }')
    rows+=("$1|$2|$3|$ratio|${4:-}")
}

n_runs=$start_runs
add "start-to-exit: kvmsandbox -- true" "$(time_cmd true)" "$(time_cmd "$K" -- true)"
n_runs=$big_runs
add "9p read ${size_mb} MiB (cat >/dev/null)" "$(on_host 'cat big.bin')" "$(in_guest 'cat big.bin')" "$size_mb"
add "9p write ${size_mb} MiB (dd, fsync)" \
    "$(on_host "dd if=/dev/zero of=w.bin bs=1M count=$size_mb conv=fsync")" \
    "$(in_guest "dd if=/dev/zero of=w.bin bs=1M count=$size_mb conv=fsync")" "$size_mb"
unset n_runs
add "find over $nfiles files" "$(on_host 'find tree')" "$(in_guest 'find tree')"
add "stat over $nfiles files" "$(on_host 'stat tree/* >/dev/null')" "$(in_guest 'stat tree/* >/dev/null')"

printf '%-40s %12s %12s %8s %20s\n' "benchmark" "host s" "kvmsandbox s" "ratio" "MiB/s host/guest"
json="["
for r in "${rows[@]}"; do
    IFS='|' read -r n h g q mb <<<"$r"
    tp="" tpj=""
    if [[ -n $mb ]]; then
        tp=$(awk -v m="$mb" -v h="$h" -v g="$g" 'BEGIN { printf "%.0f / %.0f", m / h, m / g }')
        tpj=$(awk -v m="$mb" -v h="$h" -v g="$g" 'BEGIN { printf ",\"host_mib_s\":%.1f,\"guest_mib_s\":%.1f", m / h, m / g }')
    fi
    printf '%-40s %12.3f %12.3f %8s %20s\n' "$n" "$h" "$g" "$q" "$tp"
    json+="{\"name\":\"$n\",\"host_s\":$h,\"guest_s\":$g,\"ratio\":$q$tpj},"
done
json="${json%,}]"
echo "(start-to-exit: median of ${start_runs}; the other guest figures are timed inside the VM by its own clock, VM start excluded; median of ${runs} runs, ${big_runs} for the transfers; ${size_mb} MiB, ${nfiles} files)"
echo "$json" >"$root/build/bench.json"
echo "JSON: build/bench.json"
