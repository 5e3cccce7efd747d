#!/usr/bin/env bash
# bench.sh [--short]: measures kvmsandbox against the same work on the host,
# in one run, and prints a table plus JSON (build/bench.json).
#
#   - whole runs (this script): start-to-exit of `kvmsandbox -- true`, split
#     into its phases (KVMSANDBOX_TIMING=1); 9p sequential read and write,
#     find and stat over many files, tar c of a source tree, make -j2 of a
#     small C project; console throughput through stdout; TCP guest->host over
#     --net user; virtio-blk sequential write and read; the VMM's resident
#     memory with an idle 256 MiB guest. Each next to the host's own figure
#     for the same work, measured in the same run, and the ratio.
#   - in-process (build/kvmsandbox_microbench, Google Benchmark): 9p server
#     requests per second against a temp dir and virtqueue descriptors per
#     second. These run natively on the host: they are real speeds of our code.
#
# Where this host's /dev/kvm cannot boot a stock kernel (PVM), the whole runs
# happen inside the TCG-hosted VM (scripts/kvm-in-tcg.sh): there both the
# "host" and the guest figures are emulated, so only their ratio means
# anything. --short uses small sizes (seconds per figure, for CI); the default
# is the full mode (256 MiB, 10 000 files, medians of 10 starts and 3 runs).
# The work is split in parts (start fs dev console rss); a full run there
# gives each part a TCG-hosted VM of its own, because that emulator freezes
# VMs that live much longer than 15 minutes (docs/performance.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd -P)
short=0
[[ ${1:-} == --short ]] && short=1
# Env: KVMSANDBOX_BENCH_BIN  the kvmsandbox to measure (default build/kvmsandbox;
#                            e.g. an older build, for a before/after table)
#      KVMSANDBOX_BENCH_OUT  where bench.txt and bench.json go (default build/)
#      KVMSANDBOX_BENCH_RUNS repetitions of the guest work (default 3, short 1)
#      KVMSANDBOX_BENCH_PARTS which parts to measure (default all: "start fs
#                            dev console rss"), e.g. "start" for the
#                            start-to-exit figures alone
out=${KVMSANDBOX_BENCH_OUT:-$root/build}
mkdir -p "$out"
out=$(cd "$out" && pwd -P)
rows_file=$out/bench-rows.txt
all_parts="start fs dev console rss"
parts=${KVMSANDBOX_BENCH_PARTS:-$all_parts}
for p in $parts; do
    [[ " $all_parts " == *" $p "* ]] || { echo "bench: unknown part '$p' in KVMSANDBOX_BENCH_PARTS (known: $all_parts)" >&2; exit 2; }
done

if ((short)); then size_mb=16 nfiles=1000 runs=1 start_runs=2; else size_mb=256 nfiles=10000 runs=3 start_runs=10; fi
# Under emulation a full run with 3 repetitions takes hours (stat over 10 000
# files over nested 9p alone is ~10 min): KVMSANDBOX_BENCH_RUNS=1 shortens it.
runs=${KVMSANDBOX_BENCH_RUNS:-$runs}

# report: the table of every row in $rows_file ("name|host|guest|ratio|MiB",
# host "-" for no host figure, "rss" for the memory row) and the JSON.
report() {
    local n h g q mb tp tpj json="[" rss_mib=nan
    printf '%-46s %12s %12s %8s %20s\n' "benchmark" "host s" "kvmsandbox s" "ratio" "MiB/s host/guest"
    while IFS='|' read -r n h g q mb; do
        if [[ $h == rss ]]; then
            rss_mib=$g
            continue
        fi
        tp="" tpj=""
        if [[ -n $mb ]]; then
            tp=$(awk -v m="$mb" -v h="$h" -v g="$g" 'BEGIN { printf "%.0f / %.0f", m / h, m / g }')
            tpj=$(awk -v m="$mb" -v h="$h" -v g="$g" 'BEGIN { printf ",\"host_mib_s\":%.1f,\"guest_mib_s\":%.1f", m / h, m / g }')
        fi
        if [[ $h == - ]]; then
            printf '%-46s %12s %12.3f %8s %20s\n' "$n" "-" "$g" "-" ""
            json+="{\"name\":\"${n#  }\",\"host_s\":null,\"guest_s\":$g,\"ratio\":null},"
            continue
        fi
        printf '%-46s %12.3f %12.3f %8s %20s\n' "$n" "$h" "$g" "$q" "$tp"
        json+="{\"name\":\"$n\",\"host_s\":$h,\"guest_s\":$g,\"ratio\":$q$tpj},"
    done <"$rows_file"
    printf '%-46s %12s %12s\n' "VMM resident memory, idle 256 MiB guest" "" "$rss_mib MiB"
    json+="{\"name\":\"VMM resident memory, idle 256 MiB guest\",\"vmm_rss_mib\":$rss_mib},"
    # A figure that could not be measured is null, not JSON-breaking "nan".
    json=$(sed -E 's/:-?nan/:null/g' <<<"${json%,}]")
    echo "(start-to-exit: median of ${start_runs}, its phases from KVMSANDBOX_TIMING=1; the console figure is a whole run minus the median of ${runs} starts; the other guest figures are timed inside the VM by its own clock, VM start excluded; median of ${runs} runs, each with one VM for the 9p work and one for network and disk, doing it all in a row; ${size_mb} MiB, ${nfiles} files)"
    echo "$json" >"$out/bench.json"
    echo "JSON: $out/bench.json"
}

# micro: the in-process benchmarks, natively, into build/bench-micro.txt.
micro() {
    local mb=$root/build/kvmsandbox_microbench min_time=0.5
    rm -f "$out/bench-micro.txt" "$out/bench-micro.json"
    if [[ ! -x $mb ]]; then
        echo "bench: no build/kvmsandbox_microbench (libbenchmark-dev missing at build time): no in-process figures" >&2
        return 0
    fi
    ((short)) && min_time=0.05
    "$mb" --benchmark_min_time="$min_time" --benchmark_out="$out/bench-micro.json" \
        --benchmark_out_format=json >/dev/null 2>&1 || { echo "bench: kvmsandbox_microbench failed" >&2; return 0; }
    python3 - "$out/bench-micro.json" >"$out/bench-micro.txt" <<'PY' || true
import json, sys
d = json.load(open(sys.argv[1]))
print("in-process, native (Google Benchmark):")
for b in d["benchmarks"]:
    if b.get("run_type") == "aggregate":
        continue
    ips = b.get("items_per_second")
    bps = b.get("bytes_per_second")
    extra = f"  {bps / 2**20:10.0f} MiB/s" if bps else ""
    print(f"  {b['name']:<44} {ips:14,.0f} items/s{extra}")
PY
}

if [[ -z ${KVMSANDBOX_BENCH_INNER:-} ]] && { [[ ! -c /dev/kvm ]] || [[ -d /sys/module/kvm_pvm ]]; }; then
    # The rows come back through the work directory (the harness's serial
    # ports can drop bytes of a burst when the host is busy), the only
    # directory of ours the VM sees.
    if [[ $out != "$root" && $out != "$root"/* ]]; then
        echo "bench: KVMSANDBOX_BENCH_OUT must be inside $root here: the TCG-hosted VM sees only that directory" >&2
        exit 2
    fi
    micro
    rm -f "$out/bench.txt" "$rows_file"
    rc=0
    vms=("$parts")
    ((short)) || read -ra vms <<<"$parts"
    for vm_parts in "${vms[@]}"; do
        KVMSANDBOX_BENCH_PARTS=$vm_parts bash scripts/kvm-in-tcg.sh --timeout 3600 \
            --env KVMSANDBOX_BENCH_INNER=1 --env KVMSANDBOX_BENCH_PARTS --env KVMSANDBOX_BENCH_APPEND=1 \
            --env KVMSANDBOX_BENCH_OUT="$out" ${KVMSANDBOX_BENCH_BIN:+--env KVMSANDBOX_BENCH_BIN} \
            ${KVMSANDBOX_BENCH_RUNS:+--env KVMSANDBOX_BENCH_RUNS} -- \
            bash scripts/bench.sh "$@" >/dev/null || { rc=$?; echo "bench: the TCG-hosted VM for '$vm_parts' exited $rc" >&2; }
    done
    if [[ -s $rows_file ]]; then report | tee "$out/bench.txt"; else echo "bench: no results" >&2; fi
    cat build/bench-micro.txt 2>/dev/null || true
    exit "$rc"
fi
[[ -n ${KVMSANDBOX_BENCH_INNER:-} ]] || micro

K=${KVMSANDBOX_BENCH_BIN:-$root/build/kvmsandbox}
[[ -x $K ]] || { echo "bench: build first (scripts/setup.sh)" >&2; exit 1; }
# A local directory (tmpfs inside the TCG-hosted VM), so the "host" figures
# measure the host's file system and not the harness's own 9p share.
work=$(mktemp -d "${TMPDIR:-/tmp}/kvmsandbox-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
# KVMSANDBOX_BENCH_APPEND (the TCG driver's VMs): add rows, leave the report
# to the driver.
[[ -n ${KVMSANDBOX_BENCH_APPEND:-} ]] || rm -f "$rows_file"
has_part() { [[ " $parts " == *" $1 "* ]]; }

now() { date +%s.%N; }
# median: the median of the numbers on stdin (nan when there are none).
median() { sort -g | awk '{a[NR]=$1} END { if (NR) print a[int((NR+1)/2)]; else print "nan" }'; }
# time_cmd CMD...: seconds taken by CMD (median of $runs runs, or $n_runs).
time_cmd() {
    local t=() s e i n=${n_runs:-$runs}
    for ((i = 0; i < n; i++)); do
        s=$(now)
        "$@" >/dev/null 2>&1
        e=$(now)
        t+=("$(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.4f", b - a }')")
    done
    printf '%s\n' "${t[@]}" | median
}

add() {  # name host guest [unit-size-MiB]; host "-": no host counterpart
    local ratio=-
    [[ $2 == - || $2 == rss ]] || ratio=$(awk -v h="$2" -v g="$3" 'BEGIN { printf "%.1f", (h > 0 ? g / h : 0) }')
    echo "$1|$2|$3|$ratio|${4:-}" >>"$rows_file"
}

# Start-to-exit, and its phases from the VMM's timing report (milliseconds).
part_start() {
    local i s0 e0 p v start_median start_times=()
    declare -A phase=()
    for ((i = 0; i < start_runs; i++)); do
        s0=$(now)
        KVMSANDBOX_TIMING=1 "$K" -- true >/dev/null 2>timing.err || true
        e0=$(now)
        start_times+=("$(awk -v a="$s0" -v b="$e0" 'BEGIN { printf "%.4f", b - a }')")
        for p in vmm-setup kernel-boot init-to-cmd cmd exit; do
            v=$(sed -n "s/.*timing:.* $p \([0-9.]*\) ms.*/\1/p" timing.err)
            phase[$p]+="${v:-nan} "
        done
    done
    start_median=$(printf '%s\n' "${start_times[@]}" | median)
    add "start-to-exit: kvmsandbox -- true" "$(n_runs=$start_runs time_cmd true)" "$start_median"
    for p in vmm-setup kernel-boot init-to-cmd cmd exit; do
        v=$(tr ' ' '\n' <<<"${phase[$p]}" | grep -v '^$' | median)
        add "  phase: $p" - "$(awk -v v="$v" 'BEGIN { printf "%.4f", v / 1000 }')"
    done
}

# The work measured inside the VM, next to the same work on the host. One VM
# per run and group does it all in a row (a boot is most of a run under
# emulation), each piece timed by the guest's own clock, so the VM start is
# not in it. The files live in the work directory, which the guest sees over
# 9p.
BB=$(command -v busybox || true)
sink_port=$((30000 + RANDOM % 20000))
((short)) && ncfiles=8 || ncfiles=24
make_files() {  # GROUP: what that group's ops read
    if [[ $1 == dev ]]; then
        truncate -s $((size_mb + 16))M disk.img
        return
    fi
    head -c $((size_mb * 1024 * 1024)) /dev/urandom >big.bin
    mkdir -p tree srctree cproj
    (cd tree && for ((i = 0; i < nfiles; i++)); do : >"f$i"; done)
    cp -r "$root/src" "$root/guest-init" "$root/tests" "$root/scripts" srctree/
    for ((i = 0; i < ncfiles; i++)); do
        printf 'int f%d(int x) { int s = 0; for (int i = 0; i < x; i++) s += i * %d; return s; }\n' "$i" "$i" >"cproj/f$i.c"
    done
    printf 'int main(void) { return 0; }\n' >cproj/main.c
    printf 'OBJS := $(patsubst %%.c,%%.o,$(wildcard *.c))\nprog: $(OBJS)\n\t$(CC) -o $@ $^\n%%.o: %%.c\n\t$(CC) -O2 -c -o $@ $<\nclean:\n\trm -f *.o prog\n' >cproj/Makefile
}

# ops GROUP ADDR DISK: "name|command" lines; ADDR is where the TCP sink is,
# DISK the block device (the image file on the host, /dev/vda in the guest).
# Group fs runs in a VM with no other device; group dev in one with
# --net user --disk (a network's threads take emulated CPU from the 9p ones).
ops() {
    local dflag_w=conv=notrunc,fsync dflag_r=""
    [[ $3 == /dev/vda ]] && dflag_w=oflag=direct dflag_r=iflag=direct
    if [[ $1 == dev ]]; then
        [[ -n $BB ]] && echo "tcp|bash -c 'dd if=/dev/zero bs=1M count=$size_mb >/dev/tcp/$2/$sink_port'"
        echo "blkw|dd if=/dev/zero of=$3 bs=1M count=$size_mb $dflag_w"
        echo "blkr|dd if=$3 of=/dev/null bs=1M count=$size_mb $dflag_r"
        return
    fi
    echo "read|cat big.bin"
    echo "write|dd if=/dev/zero of=w.bin bs=1M count=$size_mb conv=fsync"
    echo "find|find tree"
    echo "stat|stat tree/* >/dev/null"
    echo "tar|tar cf - srctree | wc -c"
    command -v make >/dev/null && command -v cc >/dev/null &&
        echo "make|make -s -C cproj clean && make -s -j2 -C cproj"
    return 0
}
# timed_script GROUP ADDR DISK: a sh script that runs every op once and prints
# "T name start end" for each (a fresh TCP sink must listen before the tcp op).
timed_script() {
    local name cmd
    while IFS='|' read -r name cmd; do
        printf 's=$(date +%%s.%%N); { %s; } >/dev/null 2>&1; e=$(date +%%s.%%N); echo "T %s $s $e"\n' "$cmd" "$name"
    done < <(ops "$1" "$2" "$3")
}
declare -A host_t=() guest_t=()
# collect ARRAY: add each "T name s e" line on stdin to ARRAY[name].
collect() {
    local -n into=$1
    local tag name s e
    while read -r tag name s e; do
        [[ $tag == T ]] || continue
        into[$name]+="$(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.4f", b - a }') "
    done
}
with_sink() {  # CMD...: run CMD with a fresh TCP sink listening
    local sp=""
    if [[ -n $BB ]]; then
        "$BB" nc -l -p "$sink_port" >/dev/null &
        sp=$!
        sleep 0.3
    fi
    "$@"
    if [[ -n $sp ]]; then
        kill "$sp" 2>/dev/null || true
        wait "$sp" 2>/dev/null || true
    fi
}
# row NAME OP [MiB]: the medians of one op as a row.
row() {
    local h g
    h=$(tr ' ' '\n' <<<"${host_t[$2]:-}" | grep -v '^$' | median)
    g=$(tr ' ' '\n' <<<"${guest_t[$2]:-}" | grep -v '^$' | median)
    [[ -n ${host_t[$2]:-}${guest_t[$2]:-} ]] || return 0
    add "$1" "$h" "$g" "${3:-}"
}
part_guest() {  # GROUP: fs or dev
    local group=$1 i opts nsrc
    make_files "$group"
    for ((i = 0; i < runs; i++)); do
        timed_script "$group" 127.0.0.1 disk.img >host.sh
        with_sink sh host.sh >host.out 2>/dev/null || true
        collect host_t <host.out
        timed_script "$group" 10.0.2.2 /dev/vda >guest.sh
        opts=()
        [[ $group == dev ]] && opts=(--net user --disk disk.img)
        with_sink "$K" "${opts[@]}" -- sh guest.sh >guest.out 2>/dev/null </dev/null || true
        collect guest_t <guest.out
    done
    if [[ $group == fs ]]; then
        nsrc=$(find srctree -type f | wc -l)
        row "9p read ${size_mb} MiB (cat >/dev/null)" read "$size_mb"
        row "9p write ${size_mb} MiB (dd, fsync)" write "$size_mb"
        row "find over $nfiles files" find
        row "stat over $nfiles files" stat
        row "tar c of a source tree ($nsrc files)" tar
        row "make -j2 of a small C project ($((ncfiles + 1)) files)" make
    else
        row "TCP guest->host ${size_mb} MiB (--net user)" tcp "$size_mb"
        row "virtio-blk seq write ${size_mb} MiB" blkw "$size_mb"
        row "virtio-blk seq read ${size_mb} MiB" blkr "$size_mb"
    fi
}

# Console: ${size_mb} MiB through CMD's stdout into a pipe on our side. The
# guest figure is the whole run minus the median start-to-exit of this part.
part_console() {
    local host_con guest_con_run start
    n_runs=$runs
    start=$(time_cmd "$K" -- true)
    host_con=$(time_cmd sh -c "head -c $((size_mb * 1024 * 1024)) /dev/zero | cat")
    guest_con_run=$(time_cmd sh -c "\"$K\" -- head -c $((size_mb * 1024 * 1024)) /dev/zero | cat")
    unset n_runs
    add "console: ${size_mb} MiB through stdout" "$host_con" \
        "$(awk -v a="$guest_con_run" -v b="$start" 'BEGIN { d = a - b; printf "%.4f", (d > 0.001 ? d : 0.001) }')" "$size_mb"
}

# The VMM's resident memory with an idle 256 MiB guest (after its boot).
part_rss() {
    local rss_mib=nan rss_pid i
    export KVMSANDBOX_INSTANCE_DIR=$work/instances
    "$K" --name bench-rss --mem 256M -- sh -c 'touch rss-ready; exec sleep 600' </dev/null >/dev/null 2>&1 &
    rss_pid=$!
    for ((i = 0; i < 600; i++)); do
        [[ -e rss-ready ]] && break
        kill -0 "$rss_pid" 2>/dev/null || break
        sleep 0.2
    done
    if [[ -e rss-ready ]]; then
        sleep 2
        rss_mib=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$rss_pid/status")
    fi
    "$K" stop bench-rss >/dev/null 2>&1 || kill "$rss_pid" 2>/dev/null || true
    wait "$rss_pid" 2>/dev/null || true
    add "VMM resident memory, idle 256 MiB guest" rss "$rss_mib"
}

has_part start && part_start
has_part fs && part_guest fs
has_part dev && part_guest dev
has_part console && part_console
has_part rss && part_rss
[[ -n ${KVMSANDBOX_BENCH_APPEND:-} ]] || report | tee "$out/bench.txt"
