#!/usr/bin/env bash
# setup.sh: install what kvmsandbox needs on Debian 12 and build it into build/.
#
# Idempotent: apt is only used (one update, one install) when a package is
# missing, so a rerun on a ready machine only runs ninja. Works as root or via
# non-interactive sudo; never reads stdin.
#
# Env: KVMSANDBOX_BUILD_DIR (default build), KVMSANDBOX_BUILD_TYPE (default RelWithDebInfo).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=scripts/lib/common.sh
. "$root/scripts/lib/common.sh"
cd "$root"

say() { echo "setup: $*"; }
die() {
    echo "setup: $*" >&2
    exit 1
}

packages=(
    build-essential cmake ninja-build pkg-config
    libseccomp-dev libcli11-dev libfmt-dev libgtest-dev libbenchmark-dev
    libcap-dev libslirp-dev libglib2.0-dev nlohmann-json3-dev
    e2fsprogs iproute2 xz-utils
    qemu-system-x86 busybox-static cpio clang-format
    clang-16 libclang-rt-16-dev
)

installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

command -v dpkg-query >/dev/null 2>&1 || die "this script supports Debian/Ubuntu (dpkg and apt); install the packages by hand: ${packages[*]} linux-image-amd64"

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
# A guest kernel with 9p as modules (the generic flavour; -cloud- has no 9p).
if ! ks_find_kernel net/9p/9pnet_virtio >/dev/null; then
    missing+=(linux-image-amd64)
fi

if [[ ${#missing[@]} -gt 0 ]]; then
    say "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    ks_run_privileged apt-get update -q </dev/null \
        || die "apt-get update failed (run as root, or give this user passwordless sudo)"
    ks_run_privileged apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null \
        || die "apt-get install failed for: ${missing[*]}"
    if ! ks_find_kernel net/9p/9pnet_virtio >/dev/null; then
        say "warning: still no /boot/vmlinuz-* with 9p modules; VMs will need --kernel"
    fi
fi

build=${KVMSANDBOX_BUILD_DIR:-build}
if [[ ! -f $build/build.ninja ]]; then
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${KVMSANDBOX_BUILD_TYPE:-RelWithDebInfo}" </dev/null
fi
ninja -C "$build" </dev/null

if ! status=$(ks_kvm_status); then
    if [[ $status == pvm ]]; then
        why="its /dev/kvm is the paravirtual kvm_pvm"
    else
        why="there is no /dev/kvm"
    fi
    say "this host cannot boot a stock kernel with KVM ($why); run VMs inside a TCG-hosted VM instead: scripts/kvm-in-tcg.sh -- $build/kvmsandbox -- uname -a"
fi
say "done: $build/kvmsandbox"
