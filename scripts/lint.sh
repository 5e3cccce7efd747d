#!/usr/bin/env bash
# lint.sh [FILES...]: clang-format check and clang-tidy over the project's C++
# (default: every tracked source under src/, guest-init/ and tests/).
#
# clang-tidy must come from LLVM 16 (Debian: clang-tidy-16): older releases
# cannot parse libstdc++ 12's <expected>. Even 16 reports __cpp_concepts as
# 201907, which hides std::expected, so we raise it to the C++20 value that
# g++ 12 uses; the code is compiled by g++ in any case.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mapfile -t files < <(if [[ $# -gt 0 ]]; then printf '%s\n' "$@"; else
    git ls-files 'src/*.cpp' 'src/*.h' 'guest-init/*.cpp' 'guest-init/*.h' 'tests/*.cpp' 'bench/*.cpp'; fi)

status=0
echo "== clang-format"
clang-format --dry-run -Werror "${files[@]}" || status=1

tidy=$(command -v clang-tidy-16 || true)
if [[ -z $tidy ]]; then
    echo "== clang-tidy: skipped (install clang-tidy-16)"
    exit $status
fi
[[ -f build/compile_commands.json ]] || { echo "lint: configure build/ first (scripts/setup.sh)" >&2; exit 2; }
echo "== clang-tidy"
cpp=()
for f in "${files[@]}"; do [[ $f == *.cpp ]] && cpp+=("$f"); done
out=$(printf '%s\n' "${cpp[@]}" | xargs -P "$(nproc)" -n 4 "$tidy" -p build --quiet \
    --extra-arg=-std=c++2b --extra-arg=-Wno-builtin-macro-redefined --extra-arg=-Wno-macro-redefined \
    --extra-arg=-D__cpp_concepts=202002L 2>/dev/null || true)
if grep -qE '(warning|error):' <<<"$out"; then
    grep -E '(warning|error):' <<<"$out" | sort -u
    status=1
fi
exit $status
