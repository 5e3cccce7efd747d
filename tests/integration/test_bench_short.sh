#!/usr/bin/env bash
# scripts/bench.sh --short runs to its end and measures every figure: each
# row has a guest time (the start-to-exit phases from KVMSANDBOX_TIMING=1
# included) and, where it has one, the host's own; the VMM's resident memory
# is read. No figure is judged here: times under emulation say nothing.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"

rc=0
KVMSANDBOX_BENCH_INNER=1 KVMSANDBOX_BENCH_OUT=$T_TMP bash "$T_SOURCE_DIR/scripts/bench.sh" --short >"$T_TMP/bench.out" 2>&1 || rc=$?
cat "$T_TMP/bench.out"
check "bench.sh --short exits 0 (got $rc)" test "$rc" = 0
json=$T_TMP/bench.json
check "bench.sh wrote $json" test -s "$json"
check "every figure was measured" python3 - "$json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
want = ["start-to-exit", "phase: vmm-setup", "phase: kernel-boot", "phase: init-to-cmd",
        "phase: exit", "9p read", "9p write", "find over", "stat over", "tar c of",
        "make -j2", "console:", "TCP guest->host", "virtio-blk seq write",
        "virtio-blk seq read", "VMM resident memory"]
ok = True
for w in want:
    match = [r for r in rows if r["name"].startswith(w)]
    if not match:
        print(f"missing row: {w}"); ok = False; continue
    r = match[0]
    v = r.get("vmm_rss_mib", r.get("guest_s"))
    if not isinstance(v, (int, float)) or v <= 0:
        print(f"not measured: {r}"); ok = False
    if "host_s" in r and r["host_s"] is not None and not r["host_s"] > 0:
        print(f"host figure not measured: {r}"); ok = False
sys.exit(0 if ok else 1)
PY

# The in-process benchmarks only must run here (under emulation).
mb=$T_BUILD_DIR/kvmsandbox_microbench
if [[ -x $mb ]]; then
    rc=0
    "$mb" --benchmark_min_time=0.01 >"$T_TMP/micro.out" 2>&1 || rc=$?
    tail -n 20 "$T_TMP/micro.out"
    check "kvmsandbox_microbench runs (exit $rc)" test "$rc" = 0
    check "it reports items per second" grep -q 'items_per_second' "$T_TMP/micro.out"
else
    echo "note: no $mb (libbenchmark-dev was missing at build time)"
fi

finish
