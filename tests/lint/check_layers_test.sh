#!/usr/bin/env bash
# check_layers_test.sh: proves scripts/check-layers.py can fail. Runs it on
# small fake trees: a clean one must pass, and each tree with one forbidden
# include must fail naming that file and line. ctest: lint.layers-selftest.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
check=$root/scripts/check-layers.py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

fail() {
    echo "FAIL: $*"
    status=1
}

# clean_tree DIR: a tiny tree that keeps every rule.
clean_tree() {
    local t=$1
    mkdir -p "$t"/src/{base,kvm,cli,sandbox,protocol,virtio/transport,virtio/net,virtio/block} "$t"/guest-init
    echo '#pragma once' >"$t/src/base/result.h"
    printf '#include "base/result.h"\n' >"$t/src/kvm/vm.h"
    printf '#include "base/result.h"\n' >"$t/src/protocol/guest_protocol.h"
    printf '#include "base/result.h"\n' >"$t/src/virtio/transport/device.h"
    printf '#include "virtio/transport/device.h"\n#include "base/result.h"\n' >"$t/src/virtio/net/net.h"
    printf '#include "virtio/transport/device.h"\n' >"$t/src/virtio/block/block.h"
    printf '#include "virtio/net/net.h"\n#include "kvm/vm.h"\n' >"$t/src/sandbox/session.h"
    printf '#include "sandbox/session.h"\n#include "virtio/block/block.h"\n' >"$t/src/cli/run.cpp"
    printf '#include "cli/run.h"\n' >"$t/src/main.cpp"
    printf '#include "guest-init/io.h"\n#include "protocol/guest_protocol.h"\n#include "base/result.h"\n' \
        >"$t/guest-init/main.cpp"
    echo '#pragma once' >"$t/guest-init/io.h"
}

# expect_fail NAME FILE TEXT [LINE]: FILE (relative to the tree) gets TEXT
# as its last line; the check must exit 1 and name FILE:LINE (default: the
# line of TEXT).
expect_fail() {
    local name=$1 file=$2 text=$3 line=${4:-} t=$tmp/$1 out rc=0 n
    clean_tree "$t"
    mkdir -p "$(dirname "$t/$file")"
    printf '// filler\n' >>"$t/$file"
    printf '%s\n' "$text" >>"$t/$file"
    n=${line:-$(wc -l <"$t/$file")}
    out=$(python3 "$check" "$t" 2>&1) || rc=$?
    if [[ $rc != 1 ]]; then
        fail "$name: exit $rc, expected 1; output: $out"
    elif ! grep -q "^$file:$n: " <<<"$out"; then
        fail "$name: no line for $file:$n in: $out"
    else
        echo "ok: $name: $(grep "^$file:$n: " <<<"$out")"
    fi
}

clean_tree "$tmp/clean"
if out=$(python3 "$check" "$tmp/clean" 2>&1); then
    echo "ok: clean tree passes"
else
    fail "clean tree: $out"
fi

expect_fail base-includes-cli src/base/result.h '#include "cli/run.h"'
expect_fail vmm-includes-sandbox src/vmm/machine.cpp '#include "sandbox/session.h"'
expect_fail kvm-includes-app src/kvm/vm.h '#include "app/launch.h"'
expect_fail device-includes-device src/virtio/net/net.h '#include "virtio/block/block.h"'
expect_fail transport-includes-device src/virtio/transport/device.h '#include "virtio/net/net.h"'
expect_fail protocol-includes-sandbox src/protocol/guest_protocol.h '#include "sandbox/session.h"'
expect_fail guest-init-includes-kvm guest-init/main.cpp '#include "kvm/vm.h"'
expect_fail unknown-folder src/newlayer/thing.cpp '#include "base/result.h"' 1
expect_fail unknown-target src/cli/run.cpp '#include "nowhere/thing.h"'
exit $status
