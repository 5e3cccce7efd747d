#!/usr/bin/env bash
# kvmsandbox -- CMD started as root: root-only files of the host's system
# directories stay out of the guest (README.md, "Running a command": only what
# an unprivileged host user could read is visible there).
#  1. in a system directory, a 0600 root-owned file is absent inside (cat and
#     stat: ENOENT, not in ls), a 0644 one is readable, and the files of a 0700
#     directory are absent, though the guest's root could read them all;
#  2. the same 0700 directory given with --share keeps normal permissions: its
#     files are readable as root in the guest.
# The files live on a tmpfs mounted over an existing system directory
# (/etc/opt or the like) in a private mount namespace of this test only: the
# TCG VM's / is read-only, and nothing of the host is changed or left behind.
if [[ $(id -u) != 0 ]]; then
    echo "SKIP: needs root (root-owned files in a system directory, and kvmsandbox run as root)"
    exit 77
fi
if [[ -z ${KS_SECRETS_NS:-} ]]; then
    command -v unshare >/dev/null || { echo "SKIP: unshare (util-linux) not found"; exit 77; }
    # The whole test in its own mount namespace (util-linux makes it private):
    # the tmpfs below vanishes with it.
    KS_SECRETS_NS=1 exec unshare -m bash "$0" "$@"
fi
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kvm_usable || skip "$(kvm_why_not)"
find_kernel >/dev/null || skip "no guest kernel: set KVMSANDBOX_KERNEL or install linux-image-amd64"

# An existing directory below a shared system directory to mount over.
sysdir=""
for d in /etc/opt /usr/local/etc /usr/local/src /usr/src; do
    if [[ -d $d && ! -L $d ]]; then
        sysdir=$d
        break
    fi
done
[[ -n $sysdir ]] || skip "none of /etc/opt, /usr/local/etc, /usr/local/src, /usr/src exists"
mount -t tmpfs -o mode=0755,size=1m kvmsandbox-secrets "$sysdir" || skip "cannot mount a tmpfs on $sysdir"
echo "files on a private tmpfs at $sysdir"

marker_pub=public-$RANDOM$RANDOM
marker_priv=private-$RANDOM$RANDOM
marker_key=wgkey-$RANDOM$RANDOM
echo "$marker_pub" >"$sysdir/pub.conf"
echo "$marker_priv" >"$sysdir/priv.conf"
mkdir "$sysdir/wireguard"
echo "$marker_key" >"$sysdir/wireguard/wg0.conf"
echo "readable-inner" >"$sysdir/wireguard/inner.txt"
chown -R 0:0 "$sysdir"
chmod 0644 "$sysdir/pub.conf" "$sysdir/wireguard/inner.txt"
chmod 0600 "$sysdir/priv.conf" "$sysdir/wireguard/wg0.conf"
chmod 0700 "$sysdir/wireguard"

work=$T_TMP/work
mkdir -p "$work"
cd "$work" || exit 1

# marker NAME: the value of the last "NAME=value" line of the last run's stdout.
marker() { tr -d '\r' <"$RUN_OUT" | sed -n "s/^$1=//p" | tail -n 1; }

cat >secrets.sh <<'SCRIPT'
d=$1
echo "UID=$(id -u)"
echo "PUB=$(cat "$d/pub.conf" 2>&1)"
if cat "$d/priv.conf" >priv.copy 2>priv.err; then echo "PRIV_CAT=ok"; else echo "PRIV_CAT=failed"; fi
echo "PRIV_ERR=$(head -n 1 priv.err)"
echo "PRIV_STAT=$(stat -c %a "$d/priv.conf" 2>&1)"
echo "LS=$(ls -A "$d" 2>&1 | tr '\n' ' ')"
echo "WG_STAT=$(stat -c %a "$d/wireguard" 2>&1)"
echo "WG_INNER=$(cat "$d/wireguard/inner.txt" 2>&1)"
if cat "$d/wireguard/wg0.conf" >>priv.copy 2>wg.err; then echo "WG_CAT=ok"; else echo "WG_CAT=failed"; fi
echo "WG_ERR=$(head -n 1 wg.err)"
echo "COPIED_BYTES=$(wc -c <priv.copy)"
rm -f priv.copy priv.err wg.err
echo "SHARED_LS=$(ls -A /mnt/kvmsb-wg 2>&1 | tr '\n' ' ')"
echo "SHARED_KEY=$(cat /mnt/kvmsb-wg/wg0.conf 2>&1)"
echo "SHARED_INNER=$(cat /mnt/kvmsb-wg/inner.txt 2>&1)"
echo "SECRETS_DONE=1"
SCRIPT

run_sandbox /dev/null 300 --share "$sysdir/wireguard:/mnt/kvmsb-wg:ro" -- sh ./secrets.sh "$sysdir"
show_run
check "run: exit 0 (got $RUN_RC)" test "$RUN_RC" = 0
check "run: the script ran to its end" test "$(marker SECRETS_DONE)" = 1
check "CMD runs as root in the guest (uid $(marker UID))" test "$(marker UID)" = 0

# 1. the rule on a system directory
check "a 0644 file in $sysdir is readable ($(marker PUB))" test "$(marker PUB)" = "$marker_pub"
check "a 0600 root-owned file cannot be read (PRIV_CAT=$(marker PRIV_CAT))" test "$(marker PRIV_CAT)" = failed
check "...and is absent: ENOENT from cat ('$(marker PRIV_ERR)')" grep -q "No such file" <<<"$(marker PRIV_ERR)"
check "...and from stat ('$(marker PRIV_STAT)')" grep -q "No such file" <<<"$(marker PRIV_STAT)"
check "ls of $sysdir shows pub.conf only ('$(marker LS)')" test "$(marker LS)" = "pub.conf "
check "a 0700 directory is absent ('$(marker WG_STAT)')" grep -q "No such file" <<<"$(marker WG_STAT)"
check "a 0644 file inside it is absent ('$(marker WG_INNER)')" grep -q "No such file" <<<"$(marker WG_INNER)"
check "a 0600 key inside it cannot be read (WG_CAT=$(marker WG_CAT), '$(marker WG_ERR)')" \
    test "$(marker WG_CAT)" = failed
check "nothing of them reached the writable cwd ($(marker COPIED_BYTES) bytes)" test "$(marker COPIED_BYTES)" = 0
check "the private markers appear nowhere in the output" \
    not_grep "$marker_priv" "$RUN_OUT"
check "the key appears only through --share (once)" \
    test "$(grep -c -F "$marker_key" <(tr -d '\r' <"$RUN_OUT"))" = 1

# 2. --share keeps the host's normal permissions
check "--share of the 0700 directory lists both files ('$(marker SHARED_LS)')" \
    test "$(marker SHARED_LS)" = "inner.txt wg0.conf "
check "--share: the 0600 key is readable as root ($(marker SHARED_KEY))" \
    test "$(marker SHARED_KEY)" = "$marker_key"
check "--share: the 0644 file is readable ($(marker SHARED_INNER))" \
    test "$(marker SHARED_INNER)" = readable-inner

umount "$sysdir" || echo "note: cannot unmount $sysdir (the namespace goes away with the test anyway)"
finish
