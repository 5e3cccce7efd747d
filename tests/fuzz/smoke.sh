#!/usr/bin/env bash
# smoke.sh: one fuzz-smoke test: run a libFuzzer target for a short while over
# a temporary copy of its checked-in corpus (tests/fuzz/corpus/<target>/).
#
#   smoke.sh --target NAME --binary PATH
#       run an already built fuzzer
#   smoke.sh --target NAME --build-dir DIR [--generator GEN]
#       first configure (once) and build NAME in DIR, a clang tree of
#       tests/fuzz (what the g++ build's ctest does); without a usable clang
#       print "SKIP: <reason>" and exit 77
#
# Env: KVMSANDBOX_FUZZ_CXX             the clang++ to use (default clang++-16, else a
#                                      clang++ of version 16 or newer)
#      KVMSANDBOX_FUZZ_SMOKE_SECONDS   how long to fuzz (default 20)
#      KVMSANDBOX_FUZZ_SMOKE_RUNS      upper bound on executions (default 5000000)
#
# Exit: 0 when the fuzzer finished without finding anything, 1 when it found a
# crash, leak or timeout (the input is kept under <build>/artifacts/<target>/
# and named in the output), 77 for a skip. Never reads stdin.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
target="" binary="" build_dir="" generator=Ninja
while [[ $# -gt 0 ]]; do
    case $1 in
        --target) target=$2; shift 2 ;;
        --binary) binary=$2; shift 2 ;;
        --build-dir) build_dir=$2; shift 2 ;;
        --generator) generator=$2; shift 2 ;;
        *) echo "smoke.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -n $target && ( -n $binary || -n $build_dir ) ]] || {
    echo "usage: smoke.sh --target NAME (--binary PATH | --build-dir DIR [--generator GEN])" >&2
    exit 2
}
corpus=$here/corpus/$target
[[ -d $corpus ]] || { echo "smoke.sh: no corpus directory $corpus" >&2; exit 2; }

skip() {
    echo "SKIP: $*"
    exit 77
}

# clang_major CXX: the major version of a clang++, empty if it is not clang.
clang_major() {
    "$1" --version 2>/dev/null | sed -n 's/.*clang version \([0-9][0-9]*\)\..*/\1/p' | head -n 1
}

find_clang() {
    local c v
    if [[ -n ${KVMSANDBOX_FUZZ_CXX:-} ]]; then
        command -v "$KVMSANDBOX_FUZZ_CXX" || return 1
        return 0
    fi
    for c in clang++-16 clang++-17 clang++-18 clang++-19 clang++; do
        command -v "$c" >/dev/null 2>&1 || continue
        v=$(clang_major "$c")
        if [[ -n $v && $v -ge 16 ]]; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

if [[ -z $binary ]]; then
    if ! cxx=$(find_clang); then
        skip "no clang++ 16 or newer for libFuzzer (Debian: clang-16 libclang-rt-16-dev, installed by scripts/setup.sh)"
    fi
    v=$(clang_major "$cxx")
    [[ -n $v && $v -ge 16 ]] || skip "$cxx is not clang 16 or newer (needed for libstdc++ 12's <expected>)"
    rt=$("$cxx" -print-file-name=libclang_rt.fuzzer-x86_64.a)
    if [[ $rt != /* || ! -f $rt ]]; then
        rt=$("$cxx" -print-runtime-dir 2>/dev/null)/libclang_rt.fuzzer.a
        [[ -f $rt ]] || skip "$cxx has no libFuzzer runtime (Debian: libclang-rt-$v-dev)"
    fi
    mkdir -p "$build_dir"
    # One configure/build at a time, however many of these tests run at once.
    exec 9>"$build_dir.lock"
    flock 9
    if [[ ! -f $build_dir/CMakeCache.txt ]] || ! grep -qx "CMAKE_CXX_COMPILER:[A-Z]*=$cxx" "$build_dir/CMakeCache.txt"; then
        rm -rf "$build_dir"
        cmake -S "$here" -B "$build_dir" -G "$generator" -DCMAKE_CXX_COMPILER="$cxx" \
            -DKVMSANDBOX_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo </dev/null
    fi
    cmake --build "$build_dir" --target "$target" </dev/null
    exec 9>&-
    binary=$build_dir/$target
    artifacts=$build_dir/artifacts/$target
else
    artifacts=$(dirname "$binary")/artifacts/$target
fi
[[ -x $binary ]] || { echo "smoke.sh: $binary is not an executable" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-smoke.$target.XXXXXX")
# fuzz_p9_server's scratch tree: on tmpfs when there is one (much faster).
if [[ -d /dev/shm && -w /dev/shm ]]; then
    scratch=$(mktemp -d "/dev/shm/fuzz-smoke.$target.XXXXXX")
else
    scratch=$work/scratch
fi
trap 'chmod -R u+rwx "$work" "$scratch" 2>/dev/null; rm -rf "$work" "$scratch"' EXIT
mkdir -p "$work/corpus" "$scratch" "$artifacts"
cp -R "$corpus/." "$work/corpus/"

seconds=${KVMSANDBOX_FUZZ_SMOKE_SECONDS:-20}
runs=${KVMSANDBOX_FUZZ_SMOKE_RUNS:-5000000}
echo "fuzz-smoke: $binary over $(find "$corpus" -type f | wc -l) seed(s) for ${seconds} s (at most $runs runs)"
dict=()
[[ -f $here/$target.dict ]] && dict=(-dict="$here/$target.dict")
rc=0
# libFuzzer's own default exit code for a crash is 77, our skip code: use 1.
FUZZ_P9_SCRATCH=$scratch "$binary" -max_total_time="$seconds" -runs="$runs" -timeout=10 \
    -rss_limit_mb=2048 -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "${dict[@]}" "$work/corpus" </dev/null || rc=$?
if [[ $rc != 0 ]]; then
    echo "fuzz-smoke: $target failed (exit $rc); reproduce with: $binary <input file from $artifacts/>"
    ls -l "$artifacts" || true
    exit 1
fi
echo "fuzz-smoke: $target: nothing found"
