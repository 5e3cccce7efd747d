#!/usr/bin/env bash
# kvm-in-tcg.sh: run one command inside a disposable Linux VM that has a full
# (non-paravirtual) /dev/kvm, and return the command's exit status.
#
# Why it exists: some hosts only offer a /dev/kvm that cannot boot a stock
# kernel (kvm_pvm, see README.md, "On hosts whose /dev/kvm cannot boot a stock kernel"). QEMU's software CPU (TCG, -cpu max)
# emulates AMD-V, so a stock Debian kernel booted under TCG can load kvm_amd and
# provide a complete /dev/kvm to whatever runs inside it, e.g. our VMM and its
# integration tests. Everything is emulated, so it is slow but faithful.
#
# Inside the VM:
#   - the host's / is mounted read-only over virtio-9p;
#   - the work directory (default: the current directory) is mounted read-write
#     at the same absolute path, and CMD starts there;
#   - /tmp, /run, /root, /var/tmp, /dev/shm are fresh tmpfs; /dev (devtmpfs),
#     /dev/pts, /proc and /sys are the VM's own;
#   - CMD runs as root with PATH/HOME reset and a selected part of the caller's
#     environment (KVMSANDBOX, KVMSANDBOX_*, CTEST_*, GTEST_*, *SAN_OPTIONS, CI, TERM, LANG,
#     LC_*, TZ, plus --env);
#   - stdin is /dev/null; CMD's stdout and stderr are pipes whose bytes arrive
#     on our stdout and stderr unchanged (carried by two dedicated serial
#     ports); the kernel console goes to a log file only (--log).
#
# Exit status: CMD's; 124 when --timeout expired; 123 when the VM stopped
# responding (no heartbeat from its init for --stall seconds: the emulated
# machine itself froze, which a caller may retry); 125 when the harness itself
# failed (missing tools, no usable kernel, the VM died without a status).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: kvm-in-tcg.sh [OPTIONS] -- CMD [ARGS...]
  --mem MB          guest memory (default 4096, env KVM_IN_TCG_MEM)
  --cpus N          guest vCPUs (default 1, env KVM_IN_TCG_CPUS; see below)
  --timeout S       stop the VM after S seconds, exit 124 (default 3600, env KVM_IN_TCG_TIMEOUT)
  --stall S         stop the VM when its init sent no heartbeat for S seconds, exit 123
                    (default 180, env KVM_IN_TCG_STALL)
  --log FILE        write the VM's console (kernel, init, qemu messages) to FILE
  --workdir DIR     share DIR read-write instead of the current directory
  --env NAME[=VAL]  pass one more environment variable (repeatable)
  --modules M,M     load more kernel modules in the VM (dependencies resolved)
  --kernel VERSION  use /boot/vmlinuz-VERSION (env KVM_IN_TCG_KERNEL)
Needs (Debian): qemu-system-x86 busybox-static cpio linux-image-amd64.
EOF
}

self=$(readlink -f "${BASH_SOURCE[0]}")
scripts_dir=$(dirname "$self")
# shellcheck source=scripts/lib/common.sh
. "$scripts_dir/lib/common.sh"

die() {
    echo "kvm-in-tcg: $*" >&2
    exit 125
}

mem=${KVM_IN_TCG_MEM:-4096}
# One vCPU by default: with two, QEMU 7.2's emulated nested SVM sometimes
# leaves a nested guest re-faulting forever on a present page (seen with
# `kvmsandbox debug`: rip == cr2, in the guest kernel, for minutes) or crashes
# this VM's kernel when two nested guests run. One vCPU showed neither, and
# was no slower for our tests.
cpus=${KVM_IN_TCG_CPUS:-1}
timeout_s=${KVM_IN_TCG_TIMEOUT:-3600}
stall_s=${KVM_IN_TCG_STALL:-180}
log=${KVM_IN_TCG_LOG:-}
workdir=""
kver=${KVM_IN_TCG_KERNEL:-}
extra_modules=${KVM_IN_TCG_MODULES:-}
declare -a extra_env=()

while [[ $# -gt 0 ]]; do
    case $1 in
        --mem) mem=${2:?--mem needs a value}; shift 2 ;;
        --cpus) cpus=${2:?--cpus needs a value}; shift 2 ;;
        --timeout) timeout_s=${2:?--timeout needs a value}; shift 2 ;;
        --stall) stall_s=${2:?--stall needs a value}; shift 2 ;;
        --log) log=${2:?--log needs a value}; shift 2 ;;
        --workdir) workdir=${2:?--workdir needs a value}; shift 2 ;;
        --env) extra_env+=("${2:?--env needs a value}"); shift 2 ;;
        --modules) extra_modules+=${extra_modules:+,}${2:?--modules needs a value}; shift 2 ;;
        --kernel) kver=${2:?--kernel needs a value}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        --) shift; break ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
[[ $# -gt 0 ]] || { usage >&2; die "no command given"; }
[[ $mem =~ ^[0-9]+$ ]] || die "--mem wants megabytes, got '$mem'"
[[ $cpus =~ ^[0-9]+$ ]] || die "--cpus wants a number, got '$cpus'"
[[ $timeout_s =~ ^[0-9]+$ ]] || die "--timeout wants seconds, got '$timeout_s'"
[[ $stall_s =~ ^[0-9]+$ && $stall_s -gt 0 ]] || die "--stall wants seconds, got '$stall_s'"

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found; install it: apt-get install $2"
}
need qemu-system-x86_64 qemu-system-x86
need cpio cpio
need gzip gzip
need timeout coreutils
busybox=""
for b in /bin/busybox /usr/bin/busybox "$(command -v busybox 2>/dev/null || true)"; do
    if [[ -n $b && -x $b ]] && ! ldd "$b" >/dev/null 2>&1; then
        busybox=$b
        break
    fi
done
[[ -n $busybox ]] || die "no statically linked busybox found; install it: apt-get install busybox-static"

# --- the kernel: it must have 9p and kvm_amd (TCG emulates AMD-V, not VT-x) ---
if [[ -n $kver ]]; then
    [[ -r /boot/vmlinuz-$kver ]] || die "kernel /boot/vmlinuz-$kver not found or not readable"
    if ! ks_kernel_has_module "$kver" fs/9p/9p || ! ks_kernel_has_module "$kver" arch/x86/kvm/kvm-amd; then
        die "kernel $kver lacks the 9p or kvm-amd module"
    fi
else
    kver=$(ks_find_kernel arch/x86/kvm/kvm-amd net/9p/9pnet_virtio) \
        || die "no /boot/vmlinuz-* with 9p and kvm-amd modules; install one: apt-get install linux-image-amd64 (not the -cloud- flavour)"
fi
kernel=/boot/vmlinuz-$kver
moddir=/lib/modules/$kver

run=$(mktemp -d "${TMPDIR:-/tmp}/kvm-in-tcg.XXXXXX")
qemu_pid="" out_pid="" err_pid="" dog_pid=""
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local p
    for p in "$dog_pid" "$qemu_pid" "$out_pid" "$err_pid"; do
        if [[ -n $p ]]; then kill "$p" 2>/dev/null || true; fi
    done
    rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the initramfs, cached per (script version, kernel, modules, busybox) ---
modules="virtio_pci 9pnet_virtio 9p kvm_amd tun loop overlay ${extra_modules//,/ }"
key=$( {
    cat "$self"
    echo "$kver $modules"
    stat -c '%s %Y' "$busybox" "$moddir/modules.dep"
} | sha256sum | cut -c1-16)
if [[ -n ${KVM_IN_TCG_CACHE:-} ]]; then
    cache=$KVM_IN_TCG_CACHE
elif [[ -n ${XDG_CACHE_HOME:-} || -n ${HOME:-} ]]; then
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/kvmsandbox/kvm-in-tcg
else
    cache=$(ks_repo_root)/build/kvm-in-tcg
fi
mkdir -p "$cache" 2>/dev/null || { cache=$(ks_repo_root)/build/kvm-in-tcg; mkdir -p "$cache"; }
initrd=$cache/initrd-$kver-$key.cpio.gz

# Print the module files for the wanted modules, dependencies first, using the
# kernel's modules.dep. Built-in modules are skipped; unknown ones are reported.
resolve_modules() {
    local line path deps name d
    declare -A dep_of=() path_of=() seen=()
    local -a order=()
    while IFS= read -r line; do
        path=${line%%:*}
        deps=${line#*:}
        name=${path##*/}
        name=${name%%.ko*}
        name=${name//-/_}
        path_of[$name]=$path
        dep_of[$name]=$deps
    done <"$moddir/modules.dep"
    visit() {
        local n=$1 dd
        [[ -n ${seen[$n]:-} ]] && return 0
        seen[$n]=1
        for dd in ${dep_of[$n]}; do
            dd=${dd##*/}
            dd=${dd%%.ko*}
            visit "${dd//-/_}"
        done
        order+=("${path_of[$n]}")
    }
    for name in "$@"; do
        name=${name//-/_}
        if [[ -n ${path_of[$name]:-} ]]; then
            visit "$name"
        elif ! grep -Eq "/${name//_/[-_]}\.ko" "$moddir/modules.builtin" 2>/dev/null; then
            echo "kvm-in-tcg: warning: kernel $kver has no module $name" >&2
        fi
    done
    for d in "${order[@]}"; do printf '%s\n' "$d"; done
}

build_initrd() {
    local tmp m f out
    tmp=$run/initrd
    mkdir -p "$tmp"/{bin,dev,proc,sys,tmp,ctl,newroot,modules}
    cp "$busybox" "$tmp/bin/busybox"
    # shellcheck disable=SC2086 # word splitting of the module list is intended
    while IFS= read -r m; do
        f=$moddir/$m
        out=$tmp/modules/${m##*/}
        out=${out%.ko*}.ko
        case $m in
            *.ko) cp "$f" "$out" ;;
            *.ko.xz) xz -dc "$f" >"$out" ;;
            *.ko.zst) zstd -qdc "$f" >"$out" ;;
            *.ko.gz) gzip -dc "$f" >"$out" ;;
        esac
        echo "${out##*/}" >>"$tmp/modules/order"
    done < <(resolve_modules $modules)
    touch "$tmp/modules/order"
    cat >"$tmp/init" <<'INIT'
#!/bin/busybox sh
# PID 1 of the kvm-in-tcg VM. Console (ttyS0) is the log; ttyS1 carries the
# command's stdout and ttyS2 its stderr; /ctl is the host's control directory.
B=/bin/busybox
export PATH=/bin
say() { echo "kvm-in-tcg(init): $*"; }
fail() {
    say "$*"
    echo "kvm-in-tcg: in the VM: $*" >/dev/ttyS2 2>/dev/null
    [ -d /ctl/. ] && echo 125 >/ctl/rc
    $B sync
    $B poweroff -f
}
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
for m in $($B cat /modules/order); do
    $B insmod "/modules/$m" || say "insmod $m failed"
done
opts=trans=virtio,version=9p2000.L,msize=512000
$B mount -t 9p -o "$opts" ctl /ctl || fail "cannot mount the control directory"
work=$($B cat /ctl/workdir)
$B mount -t 9p -o "$opts,ro" hostroot /newroot || fail "cannot mount the host root"
for d in dev proc sys; do $B mount --bind "/$d" "/newroot/$d" || fail "cannot bind /$d"; done
$B mkdir -p /dev/pts /dev/shm
$B ln -sf /proc/self/fd /dev/fd
for i in 0:stdin 1:stdout 2:stderr; do $B ln -sf "/proc/self/fd/${i%%:*}" "/dev/${i#*:}"; done
$B mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts 2>/dev/null \
    || $B mount -t devpts devpts /newroot/dev/pts || say "cannot mount /dev/pts"
for d in tmp run root var/tmp dev/shm; do
    [ -d "/newroot/$d" ] && $B mount -t tmpfs -o mode=1777 tmpfs "/newroot/$d"
done
$B chmod 0700 /newroot/root
if [ -n "$work" ] && [ "$work" != / ]; then
    $B mkdir -p "/newroot$work" 2>/dev/null
    $B mount -t 9p -o "$opts" work "/newroot$work" || fail "cannot mount the work directory $work"
fi
# Loopback up: tests run servers on 127.0.0.1 (slirp's gateway leads there).
$B ip link set lo up || say "cannot bring up lo"
[ -c /dev/kvm ] || echo "kvm-in-tcg: warning: no /dev/kvm in the VM (kvm_amd did not load; see the log)" >/dev/ttyS2
$B mkdir -p /newroot/run/kvm-in-tcg
$B cp /ctl/job.sh /newroot/run/kvm-in-tcg/job.sh || fail "cannot copy the job"
$B stty -F /dev/ttyS1 raw -echo 115200
$B stty -F /dev/ttyS2 raw -echo 115200
# The job writes into pipes, not into the serial ports: it must not see a
# terminal (colours, line buffering, isatty) where the caller may have none.
# PID 1 is no session leader, so opening the ports makes them no controlling
# terminal that a hangup could flush.
$B mkfifo /job-out /job-err
$B cat /job-out >/dev/ttyS1 &
outcat=$!
$B cat /job-err >/dev/ttyS2 &
errcat=$!
# The heartbeat: the host stops a VM whose heartbeat file stops changing (an
# emulated machine that froze would otherwise only end at the long timeout).
# It is also a window into a VM that seems stuck: a script dropped at
# $run/ctl/debug.sh on the host runs here (busybox sh, outside the job's
# chroot) and its output lands in $run/ctl/debug.out.
( while :; do
    $B date +%s >/ctl/heartbeat
    if [ -f /ctl/debug.sh ]; then
        $B mv /ctl/debug.sh /debug.sh && $B sh /debug.sh >/ctl/debug.out 2>&1
    fi
    $B sleep 5
done ) </dev/null >/dev/null 2>&1 &
beat=$!
say "running the job"
# (In the background so that the shell reports no "Killed" on the job's stderr.)
$B chroot /newroot /bin/bash /run/kvm-in-tcg/job.sh </dev/null >/job-out 2>/job-err &
wait $!
rc=$?
say "job exited with $rc"
# Let the copies drain; leftover processes that keep the pipes open lose their
# output after 10 s.
( $B sleep 10; $B kill $outcat $errcat 2>/dev/null ) &
dog=$!
wait $outcat
wait $errcat
$B kill $dog 2>/dev/null
# TCSADRAIN: returns when the ports have sent everything to the host.
$B stty -F /dev/ttyS1 raw
$B stty -F /dev/ttyS2 raw
$B kill $beat 2>/dev/null
echo "$rc" >/ctl/rc
$B sync
$B poweroff -f
INIT
    chmod 0755 "$tmp/init"
    (cd "$tmp" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet | gzip -1) >"$initrd.part.$$"
    mv -f "$initrd.part.$$" "$initrd"
    rm -rf "$tmp"
    find "$cache" -maxdepth 1 -name "initrd-$kver-*.cpio.gz" ! -name "${initrd##*/}" -mmin +60 -delete 2>/dev/null || true
}

[[ -s $initrd ]] || build_initrd

# --- the job: what to run, where, with which environment ---
if [[ -n $workdir ]]; then
    wd=$workdir
    workdir=$(cd "$wd" 2>/dev/null && pwd -P) || die "no such directory: $wd"
else
    workdir=$(pwd -P)
fi
mkdir "$run/ctl"
printf '%s\n' "$workdir" >"$run/ctl/workdir"
{
    echo "# generated by kvm-in-tcg.sh"
    echo "export HOME=/root USER=root LOGNAME=root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    while IFS= read -r name; do
        case $name in
            KVMSANDBOX | KVMSANDBOX_* | CTEST_* | GTEST_* | ASAN_OPTIONS | UBSAN_OPTIONS | LSAN_OPTIONS | CI | TERM | LANG | LC_* | TZ)
                printf 'export %s=%q\n' "$name" "${!name}" ;;
        esac
    done < <(compgen -e)
    for e in "${extra_env[@]}"; do
        if [[ $e == *=* ]]; then
            printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"
        elif [[ -n ${!e+x} ]]; then
            printf 'export %s=%q\n' "$e" "${!e}"
        fi
    done
    printf 'cd -- %q || exit 125\n' "$workdir"
    printf 'exec'
    printf ' %q' "$@"
    echo
} >"$run/ctl/job.sh"

# --- run the VM ---
# The command's stdout/stderr come out of QEMU through FIFOs, copied by cat so
# that any kind of caller stdout (pipe, file, tty, socket) works.
mkfifo "$run/out" "$run/err"
cat <"$run/out" &
out_pid=$!
cat <"$run/err" >&2 &
err_pid=$!
console=${log:-$run/console.log}
: >"$console"
timeout -k 10 "$timeout_s" qemu-system-x86_64 \
    -accel "tcg,thread=${KVM_IN_TCG_THREAD:-multi}" -cpu max -smp "$cpus" -m "$mem" \
    -nodefaults -no-reboot -display none -monitor none \
    -chardev "file,id=con,path=$console,append=on" -serial chardev:con \
    -chardev "file,id=out,path=$run/out" -serial chardev:out \
    -chardev "file,id=err,path=$run/err" -serial chardev:err \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 quiet loglevel=4 8250.nr_uarts=4" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$workdir,mount_tag=work,security_model=none,multidevs=remap" \
    -virtfs "local,path=$run/ctl,mount_tag=ctl,security_model=none" \
    </dev/null >>"$console" 2>&1 &
qemu_pid=$!
# The watchdog: the boot and then the heartbeat must keep the file fresh.
touch "$run/ctl/heartbeat"
(
    while sleep 5; do
        last=$(stat -c %Y "$run/ctl/heartbeat" 2>/dev/null) || exit 0
        if (($(date +%s) - last > stall_s)); then
            echo "kvm-in-tcg: the VM sent no heartbeat for over ${stall_s}s (the emulated machine froze); stopping it" >&2
            : >"$run/frozen"
            kill "$qemu_pid" 2>/dev/null
            exit 0
        fi
    done
) &
dog_pid=$!
qrc=0
wait "$qemu_pid" || qrc=$?
qemu_pid=""
kill "$dog_pid" 2>/dev/null || true
wait "$dog_pid" 2>/dev/null || true
dog_pid=""
# Unblock a reader still waiting in open() (QEMU died before opening its FIFO),
# then let both readers drain to EOF.
exec 8<>"$run/out" 9<>"$run/err"
exec 8>&- 9>&-
wait "$out_pid" || true
wait "$err_pid" || true
out_pid="" err_pid=""

if [[ -s $run/ctl/rc ]]; then
    rc=$(<"$run/ctl/rc")
    [[ $rc =~ ^[0-9]+$ ]] && exit "$rc"
fi
if [[ -e $run/frozen ]]; then
    echo "kvm-in-tcg: last console lines:" >&2
    tail -n 15 "$console" | tr -d '\r' | sed 's/^/  | /' >&2
    exit 123
fi
if [[ $qrc == 124 ]]; then
    echo "kvm-in-tcg: timed out after ${timeout_s}s; the VM was stopped" >&2
    exit 124
fi
echo "kvm-in-tcg: the VM ended without reporting an exit status (qemu exit $qrc); last console lines:" >&2
tail -n 25 "$console" | tr -d '\r' | sed 's/^/  | /' >&2
[[ -n $log ]] && echo "kvm-in-tcg: full console log: $log" >&2
exit 125
