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
work=$(mktemp -d "$root/build/bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

if ((short)); then size_mb=16 nfiles=1000 runs=2; else size_mb=256 nfiles=10000 runs=3; fi
# The big transfers are long enough to time once.
big_runs=$runs
((short)) || big_runs=1

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

rows=()
add() {  # name host guest
    local ratio
    ratio=$(awk -v h="$2" -v g="$3" 'BEGIN { printf "%.1f", (h > 0 ? g / h : 0) }')
    rows+=("$1|$2|$3|$ratio")
}

add "start-to-exit: true" "$(time_cmd true)" "$(time_cmd "$K" -- true)"
n_runs=$big_runs
add "9p read ${size_mb} MiB (cat >/dev/null)" "$(time_cmd cat big.bin)" \
    "$(time_cmd "$K" -- sh -c 'cat big.bin >/dev/null')"
add "9p write ${size_mb} MiB (dd)" \
    "$(time_cmd dd if=/dev/zero of=w.bin bs=1M count=$size_mb conv=fsync)" \
    "$(time_cmd "$K" -- dd if=/dev/zero of=w.bin bs=1M count=$size_mb conv=fsync)"
unset n_runs
add "find over $nfiles files" "$(time_cmd find tree)" "$(time_cmd "$K" -- find tree)"
# What a guest-only figure costs without the boot: subtract the `true` run.
boot=$(echo "${rows[0]}" | cut -d'|' -f3)

printf '%-40s %12s %12s %8s\n' "benchmark" "host s" "kvmsandbox s" "ratio"
json="["
for r in "${rows[@]}"; do
    IFS='|' read -r n h g q <<<"$r"
    printf '%-40s %12.3f %12.3f %8s\n' "$n" "$h" "$g" "$q"
    json+="{\"name\":\"$n\",\"host_s\":$h,\"guest_s\":$g,\"ratio\":$q},"
done
json="${json%,}]"
echo "(guest figures include one VM start, ${boot} s; sizes: ${size_mb} MiB, ${nfiles} files; median of ${runs} runs, ${big_runs} for the transfers)"
echo "$json" >"$root/build/bench.json"
echo "JSON: build/bench.json"
