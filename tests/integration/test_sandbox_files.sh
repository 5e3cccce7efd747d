#!/usr/bin/env bash
# kvmsandbox -- CMD: the file system the command sees (README.md, "Running a command").
#  1. isolation: the cwd at the same path, read-write, and files created there
#     belong to the caller; no $HOME, no /root, no /etc/shadow; /usr read-only.
#  2. "serious files": create/rename/unlink, hard links, symlinks, chmod,
#     truncate, a sparse 2 GiB file, a 10 000-entry directory and make's
#     timestamp logic, all in the shared cwd, in one run; in the same run,
#     times with nanoseconds, st_ino, st_nlink and st_blocks as the guest sees
#     them against the host's (python3 on both sides).
#  3. ownership again as a non-root caller (uid/gid 65534), when possible.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"

# The guest sees the current directory: work in a scratch one. $HOME is a
# sibling of it, with a marker the guest must not see.
work=$T_TMP/work
home=$T_TMP/home
mkdir -p "$work" "$home"
secret=home-secret-$RANDOM$RANDOM
echo "$secret" >"$home/secret.txt"
# A marker in /root when we may write there (root; in the TCG VM /root is a
# tmpfs), removed on exit.
root_marker=""
if [[ -w /root ]]; then
    root_marker=/root/kvmsandbox-test-marker-$$
    echo "root-secret" >"$root_marker"
    trap 'rm -rf "$T_TMP"; rm -f "$root_marker"' EXIT
fi
cd "$work" || exit 1
me_uid=$(id -u)
me_gid=$(id -g)

# marker NAME [FILE]: the value of the last "NAME=value" line of the last run's stdout.
marker() { tr -d '\r' <"${2:-$RUN_OUT}" | sed -n "s/^$1=//p" | tail -n 1; }
# owner FILE: "uid:gid" of FILE on the host.
owner() { stat -c %u:%g "$1" 2>/dev/null || echo missing; }

# ---------------------------------------------------------------- 1. isolation
cat >isolation.sh <<'SCRIPT'
echo "PWD=$(pwd -P)"
echo "HOME_VAR=$HOME"
echo "UIDGID=$(id -u):$(id -g)"
echo hello >written.txt && mkdir -p madedir && echo inner >madedir/inner.txt && echo "WROTE=yes"
if cat "$HOME/secret.txt" 2>/dev/null; then echo "HOME_READ=yes"; else echo "HOME_READ=no"; fi
if ls -A "$HOME" 2>/dev/null | grep -q .; then echo "HOME_LISTED=yes"; else echo "HOME_LISTED=no"; fi
echo "ROOT_LS=$(ls -A /root 2>&1 | tr '\n' ' ')"
if cat /root/kvmsandbox-test-marker-* 2>/dev/null; then echo "ROOT_READ=yes"; else echo "ROOT_READ=no"; fi
if cat /etc/shadow >shadow.copy 2>shadow.err; then echo "SHADOW_CAT=ok"; else echo "SHADOW_CAT=failed"; fi
echo "SHADOW_ERR=$(head -n 1 shadow.err)"
echo "SHADOW_BYTES=$(wc -c <shadow.copy)"
if grep -q '^root:' shadow.copy; then echo "SHADOW_HAS_ROOT=yes"; else echo "SHADOW_HAS_ROOT=no"; fi
rm -f shadow.copy shadow.err
if msg=$(touch /usr/kvmsandbox-write-test 2>&1); then echo "USR_WRITE=ok"; rm -f /usr/kvmsandbox-write-test; else echo "USR_WRITE=failed"; fi
echo "USR_WRITE_MSG=$msg"
echo "ISOLATION_DONE=1"
SCRIPT

HOME=$home run_sandbox /dev/null 240 -- sh ./isolation.sh
show_run
check "isolation run: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
check "isolation run: the script ran to its end" test "$(marker ISOLATION_DONE)" = 1
check "pwd inside is the host cwd ($(marker PWD) = $work)" test "$(marker PWD)" = "$work"
check "\$HOME is passed on ($(marker HOME_VAR))" test "$(marker HOME_VAR)" = "$home"
check "written.txt appeared on the host with 'hello'" file_is "$work/written.txt" $'hello\n'
check "written.txt belongs to the caller on the host ($(owner "$work/written.txt"), want $me_uid:$me_gid)" \
    test "$(owner "$work/written.txt")" = "$me_uid:$me_gid"
check "madedir/inner.txt belongs to the caller on the host ($(owner "$work/madedir/inner.txt"))" \
    test "$(owner "$work/madedir/inner.txt")" = "$me_uid:$me_gid"
check "host \$HOME/secret.txt is not readable inside (HOME_READ=$(marker HOME_READ))" test "$(marker HOME_READ)" = no
check "host \$HOME is not listable inside (HOME_LISTED=$(marker HOME_LISTED))" test "$(marker HOME_LISTED)" = no
check "the secret from \$HOME appears nowhere in the output" not_grep "$secret" "$RUN_OUT"
if [[ -n $root_marker ]]; then
    check "host /root is not visible inside (ROOT_READ=$(marker ROOT_READ), ls: $(marker ROOT_LS))" \
        test "$(marker ROOT_READ)" = no
else
    echo "note: /root not writable here: the /root check only looks for a leak of its listing"
fi
check "host /root's files are not listed inside (ls /root: '$(marker ROOT_LS)')" not_grep kvmsandbox-test-marker <(marker ROOT_LS)
check "cat /etc/shadow fails inside (SHADOW_CAT=$(marker SHADOW_CAT), err '$(marker SHADOW_ERR)')" \
    test "$(marker SHADOW_CAT)" = failed
check "no /etc/shadow content inside (SHADOW_BYTES=$(marker SHADOW_BYTES), root line: $(marker SHADOW_HAS_ROOT))" \
    test "$(marker SHADOW_HAS_ROOT)" = no
check "writing to /usr fails (USR_WRITE=$(marker USR_WRITE))" test "$(marker USR_WRITE)" = failed
check "... with 'Read-only file system' ($(marker USR_WRITE_MSG))" grep -q 'Read-only file system' <(marker USR_WRITE_MSG)
check "nothing was written into the host's /usr" test ! -e /usr/kvmsandbox-write-test

# ---------------------------------------------------------------- 2. serious files
mkdir sf
# 10 000 entries, made on the host: the guest lists them (9p readdir in many chunks).
mkdir sf/many
(cd sf/many && seq -f 'entry-%05g' 1 10000 | xargs touch)
# shellcheck disable=SC2012 # plain names, the same listing as inside
want_sum=$(ls sf/many | LC_ALL=C sort | md5sum | cut -d' ' -f1)
cat >sf/Makefile <<'MAKE'
all: out1 out2
out1: src1
	cp src1 out1
	echo out1 >>build.log
out2: src2
	cp src2 out2
	echo out2 >>build.log
MAKE
echo one >sf/src1
echo two >sf/src2
# Times set on the host with nanoseconds: the guest must see them exactly.
have_py=no
if command -v python3 >/dev/null; then
    have_py=yes
    echo host >sf/ts-host
    python3 -c 'import os; os.utime("sf/ts-host", ns=(1700000000123456789, 1700000001987654321))'
fi

cat >serious.sh <<'SCRIPT'
cd sf || exit 1
# r NAME CMD...: run CMD, print "R NAME ok" or "R NAME FAIL".
r() { n=$1; shift; if "$@"; then echo "R $n ok"; else echo "R $n FAIL"; fi; }
eq() { [ "$1" = "$2" ] || { echo "  want '$2', got '$1'" >&2; return 1; }; }

echo a >a
r create eq "$(cat a)" a
mv a b
r rename sh -c '[ ! -e a ] && [ "$(cat b)" = a ]'
echo 1 >x; echo 2 >y; mv x y
r rename-over eq "$(cat y 2>&1) $(ls x 2>/dev/null)" "1 "
rm b
r unlink sh -c '[ ! -e b ] && ! ls b 2>/dev/null'
mkdir d1 && echo in >d1/f && mv d1 d2
r rename-dir sh -c '[ ! -e d1 ] && [ "$(cat d2/f)" = in ]'
rm -r d2
r rmdir eval '[ ! -e d2 ]'

echo h >h1
ln h1 h2
r hardlink-count eq "$(stat -c %h h1)" 2
r hardlink-inode eq "$(stat -c %i h1)" "$(stat -c %i h2)"
echo more >>h2
r hardlink-shared eq "$(cat h1 | tr '\n' ' ')" "h more "
ln h1 keep-hard
rm h1
r hardlink-after-unlink eq "$(cat h2 | tr '\n' ' ')/$(stat -c %h h2)" "h more /2"

echo t >target
ln -s target sl
r symlink-readlink eq "$(readlink sl)" target
r symlink-follow eq "$(cat sl)" t
r symlink-is-link eval '[ -L sl ]'
ln -s nowhere dangling
r symlink-dangling eval '[ -L dangling ] && [ ! -e dangling ]'
mkdir sub && ln -s ../target sub/up
r symlink-relative eq "$(cat sub/up)" t

echo m >m
chmod 0750 m
r chmod-750 eq "$(stat -c %a m)" 750
chmod 0604 m
r chmod-604 eq "$(stat -c %a m)" 604
chmod u+x,g-r m
r chmod-symbolic eq "$(stat -c %a m)" 704
chmod 0604 m

printf 0123456789 >t
truncate -s 4 t
r truncate-shrink eq "$(cat t)" 0123
truncate -s 100 t
r truncate-grow eq "$(stat -c %s t)/$(tail -c 96 t | tr -d '\0' | wc -c)" 100/0
: >t
r truncate-zero eq "$(stat -c %s t)" 0

truncate -s 2G sparse
r sparse-size eq "$(stat -c %s sparse)" 2147483648
du -k sparse
r sparse-du eval '[ "$(du -k sparse | cut -f1)" -lt 1024 ]'
printf end | dd of=sparse bs=1 seek=2147483645 conv=notrunc 2>/dev/null
r sparse-tail-write eq "$(tail -c 3 sparse)/$(stat -c %s sparse)" end/2147483648

echo "LS_COUNT=$(ls many | wc -l)"
echo "LS_SUM=$(ls many | LC_ALL=C sort | md5sum | cut -d' ' -f1)"
echo "FIND_COUNT=$(find many -type f | wc -l)"

if command -v make >/dev/null; then
    make -s 2>&1
    echo "MAKE1=$(tr '\n' ' ' <build.log)"
    make -s 2>&1
    echo "MAKE_NOOP=$(tr '\n' ' ' <build.log)"
    sleep 1
    echo one-changed >src1
    touch src1
    make -s >make2.log 2>&1
    cat make2.log
    echo "MAKE2=$(tr '\n' ' ' <build.log)"
    if grep -Eqi 'clock skew|in the future' make2.log; then echo "MAKE_SKEW=yes"; else echo "MAKE_SKEW=no"; fi
    # The guest clock against the host's: the host stamps a new file's mtime.
    echo "GUEST_NOW=$(date +%s.%N)"; : >clockprobe
    r make-output eq "$(cat out1)/$(cat out2)" one-changed/two
else
    echo "MAKE1=missing"
fi

# Times and inode numbers: "atime mtime ctime (ns) ino nlink blocks" lines.
if command -v python3 >/dev/null; then
    python3 - <<'PY'
import os
def st(p):
    s = os.stat(p, follow_symlinks=False)
    return "%d %d %d %d %d %d" % (s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns,
                                  s.st_ino, s.st_nlink, s.st_blocks)
with open("ts-guest", "w") as f:
    f.write("g" * 5000)
os.utime("ts-guest", ns=(1002003004, 2003004005))
print("TS_GUEST=" + st("ts-guest"))
with open("ts-written", "w") as f:
    f.write("w" * 10000)
os.link("ts-written", "ts-written-link")
print("TS_WRITTEN=" + st("ts-written"))
print("TS_HOST=" + st("ts-host"))
print("TS_DIR=" + st("."))
# The file system type of the cwd: the longest mount point above it.
cwd, best, fstype = os.getcwd(), "", "?"
for line in open("/proc/self/mounts"):
    f = line.split()
    mnt = f[1].replace("\\040", " ")
    if (cwd == mnt or cwd.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
        best, fstype = mnt, f[2]
print("TS_FSTYPE=" + fstype)
PY
else
    echo "TS_GUEST=missing"
fi
echo "SERIOUS_DONE=1"
SCRIPT

run_sandbox /dev/null 600 -- sh ./serious.sh
show_run
check "serious run: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
check "serious run: the script ran to its end" test "$(marker SERIOUS_DONE)" = 1
for step in create rename rename-over unlink rename-dir rmdir \
    hardlink-count hardlink-inode hardlink-shared hardlink-after-unlink \
    symlink-readlink symlink-follow symlink-is-link symlink-dangling symlink-relative \
    chmod-750 chmod-604 chmod-symbolic truncate-shrink truncate-grow truncate-zero \
    sparse-size sparse-du sparse-tail-write make-output; do
    if [[ $step == make-output && $(marker MAKE1) == missing ]]; then continue; fi
    check "inside: $step" grep -qx "R $step ok" <(tr -d '\r' <"$RUN_OUT")
done
check "ls of the 10 000-entry directory counts 10000 (got $(marker LS_COUNT))" test "$(marker LS_COUNT)" = 10000
check "find counts 10000 files (got $(marker FIND_COUNT))" test "$(marker FIND_COUNT)" = 10000
check "the names listed inside are the host's (md5 $(marker LS_SUM) vs $want_sum)" test "$(marker LS_SUM)" = "$want_sum"
if [[ $(marker MAKE1) == missing ]]; then
    echo "note: no make on this host: make checks skipped"
else
    check "make built both targets (build.log: $(marker MAKE1))" test "$(marker MAKE1)" = "out1 out2 "
    check "make again rebuilt nothing (build.log: $(marker MAKE_NOOP))" test "$(marker MAKE_NOOP)" = "out1 out2 "
    check "make after touching src1 rebuilt only out1 (build.log: $(marker MAKE2))" test "$(marker MAKE2)" = "out1 out2 out1 "
    # A guest clock behind the host's makes files touched inside look "in the
    # future" to make. Reported, not checked: it depends on where in its second
    # the guest clock started (it comes from the CMOS RTC).
    skew=$(awk -v h="$(stat -c %.9Y "$work/sf/clockprobe" 2>/dev/null || echo 0)" -v g="$(marker GUEST_NOW)" \
        'BEGIN { printf "%.3f", h - g }')
    echo "note: host clock minus guest clock, about ${skew}s (includes one 9p create);" \
        "make's clock skew warning: $(marker MAKE_SKEW)"
fi
# Times and inode numbers: the guest's view against the host's.
# host_st FILE: "atime mtime ctime (ns) ino nlink blocks" of FILE on the host.
host_st() {
    python3 -c 'import os, sys
s = os.stat(sys.argv[1], follow_symlinks=False)
print("%d %d %d %d %d %d" % (s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns, s.st_ino, s.st_nlink, s.st_blocks))' "$1" 2>&1
}
# fields "1 2 4" LINE: those fields of LINE.
fields() { echo "$2" | awk -v want="$1" 'BEGIN { n = split(want, w, " ") } { for (i = 1; i <= n; i++) printf "%s%s", $w[i], (i < n ? " " : "\n") }'; }
if [[ $have_py == no || $(marker TS_GUEST) == missing ]]; then
    echo "note: no python3 here: time and inode checks skipped"
else
    g=$(marker TS_GUEST)
    h=$(host_st "$work/sf/ts-guest")
    check "guest-set times: the guest's stat is the host's (atime mtime ctime ino nlink blocks: guest '$g', host '$h')" \
        test "$g" = "$h"
    if [[ $(fields "1 2" "$g") == "1002003004 2003004005" ]]; then
        echo "ok: os.utime(ns=...) in the guest keeps the nanoseconds"
    elif [[ $(marker TS_FSTYPE) == 9p && $(fields "1 2" "$g") == "1000000000 2000000000" ]]; then
        # Linux's 9p client never lowers its superblock's time granularity from
        # the VFS default of 1 s, so the guest kernel (notify_change) truncates
        # explicit times before they reach our server; over virtio-fs the
        # server sets the granularity to 1 ns.
        echo "note: guest-set times arrive in whole seconds over 9p (Linux's v9fs keeps s_time_gran at 1 s): '$(fields "1 2" "$g")'"
    else
        check "os.utime(ns=(1002003004, 2003004005)) in the guest reads back exactly (got '$(fields "1 2" "$g")', fs $(marker TS_FSTYPE))" false
    fi
    g=$(marker TS_WRITTEN)
    h=$(host_st "$work/sf/ts-written")
    check "a file written inside: the guest's stat is the host's, mtime to the ns (guest '$g', host '$h')" \
        test "$g" = "$h"
    check "... and it has 2 links (nlink: $(fields 5 "$g"))" test "$(fields 5 "$g")" = 2
    g=$(marker TS_HOST)
    h=$(host_st "$work/sf/ts-host")
    check "host-set times with ns are seen exactly inside (guest '$(fields "1 2" "$g")')" \
        test "$(fields "1 2" "$g")" = "1700000000123456789 1700000001987654321"
    check "... and ino nlink blocks agree (guest '$(fields "4 5 6" "$g")', host '$(fields "4 5 6" "$h")')" \
        test "$(fields "4 5 6" "$g")" = "$(fields "4 5 6" "$h")"
    g=$(marker TS_DIR)
    h=$(host_st "$work/sf")
    check "the directory: mtime ctime ino nlink agree (guest '$(fields "2 3 4 5" "$g")', host '$(fields "2 3 4 5" "$h")')" \
        test "$(fields "2 3 4 5" "$g")" = "$(fields "2 3 4 5" "$h")"
fi
# What the host sees afterwards.
check "host: a, b, x are gone; y holds 1" sh -c "[ ! -e '$work/sf/a' ] && [ ! -e '$work/sf/b' ] && [ ! -e '$work/sf/x' ] && [ \"\$(cat '$work/sf/y')\" = 1 ]"
check "host: h2 and keep-hard are one inode with 2 links" \
    test "$(stat -c %i/%h "$work/sf/h2" 2>&1)" = "$(stat -c %i "$work/sf/keep-hard" 2>&1)/2"
check "host: sl is a symlink to 'target'" test "$(readlink "$work/sf/sl")" = target
check "host: dangling is a symlink to 'nowhere'" test "$(readlink "$work/sf/dangling")" = nowhere
check "host: m has mode 604 (got $(stat -c %a "$work/sf/m" 2>&1))" test "$(stat -c %a "$work/sf/m" 2>&1)" = 604
check "host: t is empty" test -f "$work/sf/t" -a ! -s "$work/sf/t"
check "host: sparse is 2 GiB (got $(stat -c %s "$work/sf/sparse" 2>&1))" test "$(stat -c %s "$work/sf/sparse" 2>&1)" = 2147483648
check "host: sparse uses < 1 MiB (du -k: $(du -k "$work/sf/sparse" 2>&1 | cut -f1))" \
    test "$(du -k "$work/sf/sparse" | cut -f1)" -lt 1024
check "host: sparse ends with 'end'" test "$(tail -c 3 "$work/sf/sparse")" = end
check "host: files made inside belong to the caller (sparse: $(owner "$work/sf/sparse"), sub/up: $(stat -c %u:%g "$work/sf/sub/up" 2>&1))" \
    test "$(owner "$work/sf/sparse") $(stat -c %u:%g "$work/sf/sub/up" 2>&1)" = "$me_uid:$me_gid $me_uid:$me_gid"
rm -rf "$work/sf"

# ---------------------------------------------------------------- 3. as non-root
# uid/gid 65534 (nobody). /dev/kvm is often root-only (0600): then the caller
# gets CAP_DAC_OVERRIDE as an ambient capability, which lets it open /dev/kvm
# but changes nothing about the uid/gid of the files it creates.
nr_uid=65534
nr_gid=65534
declare -a as_user=()
nr_note=""
if [[ $me_uid != 0 ]]; then
    nr_note="not root: cannot switch to another user (this run already checked a caller uid $me_uid)"
elif ! command -v setpriv >/dev/null; then
    nr_note="no setpriv on this host"
else
    as_user=(setpriv "--reuid=$nr_uid" "--regid=$nr_gid" --clear-groups)
    kvm_dev=${KVMSANDBOX_KVM_DEVICE:-/dev/kvm}
    if ! "${as_user[@]}" test -r "$kvm_dev" -a -w "$kvm_dev"; then
        caps=(--inh-caps=+dac_override --ambient-caps=+dac_override)
        if "${as_user[@]}" "${caps[@]}" true 2>/dev/null; then
            echo "note: $kvm_dev is not accessible to uid $nr_uid: running it with ambient CAP_DAC_OVERRIDE"
            as_user+=("${caps[@]}")
        else
            nr_note="$kvm_dev is not accessible to uid $nr_uid and setpriv cannot grant ambient capabilities"
            as_user=()
        fi
    fi
fi
if ((${#as_user[@]} == 0)); then
    echo "note: non-root ownership check skipped: $nr_note"
else
    nr_work=$T_TMP/nonroot-work
    mkdir -p "$nr_work"
    # Its own home, as a real user has (kvmsandbox keeps its instance
    # directory there and refuses one owned by somebody else).
    nr_home=$T_TMP/nonroot-home
    mkdir -p "$nr_home"
    chown "$nr_uid:$nr_gid" "$nr_work" "$nr_home"
    chmod 0711 "$T_TMP"
    cd "$nr_work" || exit 1
    # shellcheck disable=SC2034 # read by run_sandbox (lib.sh)
    T_RUN_WRAP=("${as_user[@]}")
    # shellcheck disable=SC2016 # expanded in the guest
    HOME=$nr_home run_sandbox /dev/null 240 -- \
        sh -c 'echo "UIDGID=$(id -u):$(id -g)"; echo "PWD=$(pwd -P)"; echo mine >mine.txt; mkdir mydir; ln -s mine.txt mylink'
    # shellcheck disable=SC2034 # read by run_sandbox (lib.sh)
    T_RUN_WRAP=()
    show_run
    check "non-root run: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
    check "non-root: the command runs as $nr_uid:$nr_gid (got $(marker UIDGID))" test "$(marker UIDGID)" = "$nr_uid:$nr_gid"
    check "non-root: pwd is the host cwd ($(marker PWD))" test "$(marker PWD)" = "$nr_work"
    check "non-root: mine.txt belongs to $nr_uid:$nr_gid on the host (got $(owner "$nr_work/mine.txt"))" \
        test "$(owner "$nr_work/mine.txt")" = "$nr_uid:$nr_gid"
    check "non-root: mydir belongs to $nr_uid:$nr_gid on the host (got $(owner "$nr_work/mydir"))" \
        test "$(owner "$nr_work/mydir")" = "$nr_uid:$nr_gid"
    check "non-root: mylink belongs to $nr_uid:$nr_gid on the host (got $(stat -c %u:%g "$nr_work/mylink" 2>&1))" \
        test "$(stat -c %u:%g "$nr_work/mylink" 2>&1)" = "$nr_uid:$nr_gid"
    cd "$T_TMP" || exit 1
fi

finish
