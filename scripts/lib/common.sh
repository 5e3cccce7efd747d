# shellcheck shell=bash
# Helpers shared by scripts/*.sh. Source it; it defines functions only.

# The repository root (the parent of scripts/).
ks_repo_root() {
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
    printf '%s\n' "$here"
}

# ks_kernel_has_module VERSION RELPATH: does /lib/modules/VERSION/kernel/RELPATH.ko
# exist, compressed or not?
ks_kernel_has_module() {
    local base="/lib/modules/$1/kernel/$2" ext
    for ext in .ko .ko.xz .ko.zst .ko.gz; do
        [[ -f $base$ext ]] && return 0
    done
    return 1
}

# ks_find_kernel [RELPATH...]: print the version of the newest /boot/vmlinuz-*
# whose module tree has fs/9p/9p and every RELPATH given. Returns 1 if none.
ks_find_kernel() {
    local k v m ok
    local -a kernels=()
    shopt -s nullglob
    kernels=(/boot/vmlinuz-*)
    shopt -u nullglob
    [[ ${#kernels[@]} -gt 0 ]] || return 1
    while IFS= read -r k; do
        v=${k#/boot/vmlinuz-}
        [[ -r $k ]] || continue
        ok=1
        for m in fs/9p/9p "$@"; do
            ks_kernel_has_module "$v" "$m" || { ok=0; break; }
        done
        if [[ $ok == 1 ]]; then
            printf '%s\n' "$v"
            return 0
        fi
    done < <(printf '%s\n' "${kernels[@]}" | sort -V -r)
    return 1
}

# ks_kvm_status: print "ok" when this host's /dev/kvm can boot a stock kernel,
# "missing" when there is no /dev/kvm, "pvm" when it is the paravirtual kvm_pvm.
# Returns 0 only for "ok".
ks_kvm_status() {
    local dev=${KVMSANDBOX_KVM_DEVICE:-/dev/kvm}
    if [[ ! -c $dev ]]; then
        echo missing
        return 1
    fi
    if [[ -d /sys/module/kvm_pvm ]]; then
        echo pvm
        return 1
    fi
    echo ok
}

# ks_run_privileged CMD...: run CMD as root: directly when we are root, through
# non-interactive sudo when it is available. Returns 126 when neither works.
ks_run_privileged() {
    if [[ $(id -u) == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        echo "need root to run: $*" >&2
        return 126
    fi
}
