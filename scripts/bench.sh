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
    # The table comes back through the work directory: the harness's serial
    # ports can drop bytes of a burst when the host is busy.
    rm -f build/bench.txt
    rc=0
    bash scripts/kvm-in-tcg.sh --timeout 3000 --env KVMSANDBOX_BENCH_INNER=1 -- \
        bash scripts/bench.sh "$@" >/dev/null || rc=$?
    cat build/bench.txt 2>/dev/null || echo "bench: no results (the TCG-hosted VM exited $rc)" >&2
    exit "$rc"
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
        out=$("$K" "${guest_opts[@]}" -- sh -c 's=$(date +%s.%N); '"$1"' >/dev/null 2>&1; e=$(date +%s.%N); echo "$s $e"' 2>/dev/null | tail -n 1)
        t+=("$(awk -v l="$out" 'BEGIN { split(l, a, " "); if (a[2] > 0) printf "%.4f", a[2] - a[1]; else print "nan" }')")
    done
    printf '%s\n' "${t[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
guest_opts=()
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

# TCP guest->host over --net user: the guest sends to a sink on the host's
# loopback through slirp's gateway (10.0.2.2); the host's own figure is the
# same transfer over loopback. Timed by the sender; the sink is a fresh
# `busybox nc -l` per run, so a run never reuses another's connection.
if BB=$(command -v busybox); then
    sink_port=$((30000 + RANDOM % 20000))
    # tcp_send ADDR: one timed run's command (bash's /dev/tcp, closed at dd's end).
    tcp_send() { echo "bash -c 'dd if=/dev/zero bs=1M count=$size_mb >/dev/tcp/$1/$sink_port'"; }
    with_sink() {  # with_sink FN ARG: FN ARG with a sink listening (one per run)
        local t=() i n=$runs
        for ((i = 0; i < n; i++)); do
            "$BB" nc -l -p "$sink_port" >/dev/null &
            local sp=$!
            sleep 0.3
            t+=("$(n_runs=1 "$1" "$2")")
            wait "$sp" 2>/dev/null || true
        done
        printf '%s\n' "${t[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
    }
    host_tcp=$(with_sink on_host "$(tcp_send 127.0.0.1)")
    guest_opts=(--net user)
    guest_tcp=$(with_sink in_guest "$(tcp_send 10.0.2.2)")
    guest_opts=()
    add "TCP guest->host ${size_mb} MiB (--net user)" "$host_tcp" "$guest_tcp" "$size_mb"
else
    echo "bench: busybox is not installed: no TCP figure" >&2
fi

# virtio-blk: sequential write then read of the raw device with O_DIRECT in
# the guest (no guest page cache), next to dd on the image file on the host.
truncate -s $((size_mb + 16))M disk.img
n_runs=$runs
host_w=$(on_host "dd if=/dev/zero of=disk.img bs=1M count=$size_mb conv=notrunc,fsync")
host_r=$(on_host "dd if=disk.img of=/dev/null bs=1M count=$size_mb")
guest_opts=(--disk disk.img)
guest_w=$(in_guest "dd if=/dev/zero of=/dev/vda bs=1M count=$size_mb oflag=direct")
guest_r=$(in_guest "dd if=/dev/vda of=/dev/null bs=1M count=$size_mb iflag=direct")
guest_opts=()
add "virtio-blk seq write ${size_mb} MiB" "$host_w" "$guest_w" "$size_mb"
add "virtio-blk seq read ${size_mb} MiB" "$host_r" "$guest_r" "$size_mb"
unset n_runs

# report: the table and the JSON.
report() {
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
    # A figure that could not be measured is null, not JSON-breaking "nan".
    json=$(sed -E 's/:-?nan/:null/g' <<<"${json%,}]")
    echo "(start-to-exit: median of ${start_runs}; the other guest figures are timed inside the VM by its own clock, VM start excluded; median of ${runs} runs, ${big_runs} for the transfers; ${size_mb} MiB, ${nfiles} files)"
    echo "$json" >"$root/build/bench.json"
    echo "JSON: build/bench.json"
}
report | tee "$root/build/bench.txt"
