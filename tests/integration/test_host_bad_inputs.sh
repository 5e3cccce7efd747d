#!/usr/bin/env bash
# Bad input from the user never gets as far as a boot: each one is refused
# with exit 125 and exactly one line on stderr that names what is wrong,
# whatever the host's KVM (these checks come before KVM's). Runs on the host
# (label "host"): it needs no guest. Kernels without drivers, bad kernels and
# missing disks are covered where a KVM can boot (test_bad_inputs, test_disk).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export KVMSANDBOX_INSTANCE_DIR=$T_TMP/instances
cd "$T_TMP" || exit 1

run_vmm 30 --bogus -- true
expect_one_line_error "an unknown option" 125 "unknown option.*--bogus"
run_vmm 30 run --no-such-flag
expect_one_line_error "an unknown option of run" 125 "unknown option.*--no-such-flag"
run_vmm 30 --mem 12Q -- true
expect_one_line_error "--mem 12Q" 125 "--mem.*12Q.*suffix"
run_vmm 30 --mem lots -- true
expect_one_line_error "--mem lots" 125 "--mem.*invalid size 'lots'"
run_vmm 30 --mem 1M -- true
expect_one_line_error "--mem 1M (too small)" 125 "--mem 1M is too small"
run_vmm 30 --mem 64T -- true
expect_one_line_error "--mem 64T (more than the host has)" 125 "more than this host's"
run_vmm 30 --cpus 0 -- true
expect_one_line_error "--cpus 0" 125 "--cpus"
run_vmm 30 --timeout -1 -- true
expect_one_line_error "--timeout -1" 125 "--timeout.*more than 0"
run_vmm 30 --timeout soon -- true
expect_one_line_error "--timeout soon" 125 "--timeout.*not a number"
run_vmm 30 --kernel "$T_TMP/no-such-kernel" -- true
expect_one_line_error "a missing kernel" 125 "no-such-kernel"
# A kernel whose modules are not installed: the real one with another
# version string (same length, first occurrence: the setup header's).
if kernel=$(find_kernel) && command -v perl >/dev/null; then
    v=${kernel##*/vmlinuz-}
    perl -0777 -pe "s/\Q$v\E/9${v:1}/" "$kernel" >"$T_TMP/vmlinuz-nomods"
    run_vmm 30 --kernel "$T_TMP/vmlinuz-nomods" -- true
    expect_one_line_error "a kernel without its modules" 125 "has no modules.*install"
else
    echo "note: no guest kernel or no perl here: the kernel-without-modules case is not checked"
fi
run_vmm 30 --share "$T_TMP/no-such-dir" -- true
expect_one_line_error "a share that does not exist" 125 "no-such-dir"
run_vmm 30 --share "$T_TMP:relative/guest" -- true
expect_one_line_error "a share with a relative guest path" 125 "relative/guest|absolute"
run_vmm 30 --net bridge -- true
expect_one_line_error "--net bridge" 125 "expected none, user or tap"
run_vmm 30 --net user --publish 70000:80 -- true
expect_one_line_error "--publish 70000:80" 125 "70000|port"
run_vmm 30 --disk "$T_TMP/img,fast" -- true
expect_one_line_error "--disk with an unknown option" 125 "unknown option"
run_vmm 30 --name 'no/slash' -- true
expect_one_line_error "--name with a slash" 125 "name"

# Repeatable options take one value each: "--" still ends our options, so
# the command's own -c is not read as --cpus.
run_vmm 30 --share "$T_TMP" --net user --publish 18080:80 --disk "$T_TMP/none.img" -- sh -c 'exit 3'
check "options before -- stop there (stderr: $(head -c 200 "$RUN_ERR"))" not_grep "--cpus" "$RUN_ERR"
check "... and the run fails on the missing disk or this host's KVM (exit $RUN_RC)" test "$RUN_RC" = 125

# An instance directory that cannot be used: not creatable, world-writable.
KVMSANDBOX_INSTANCE_DIR=/proc/kvmsandbox-nope run_vmm 30 -- true
expect_one_line_error "an instance directory that cannot be created" 125 "instance directory"
mkdir -m 1777 "$T_TMP/open"
KVMSANDBOX_INSTANCE_DIR=$T_TMP/open run_vmm 30 -- true
expect_one_line_error "a world-writable instance directory" 125 "world-writable"
# A full one: a tmpfs with no inode left for the instance's lock file.
full=$T_TMP/full
mkdir -p "$full"
if [[ $(id -u) == 0 ]] && mount -t tmpfs -o size=64k,nr_inodes=2,mode=0700 tmpfs "$full" 2>/dev/null; then
    : >"$full/filler" 2>/dev/null || true
    KVMSANDBOX_INSTANCE_DIR=$full run_vmm 30 -- true
    umount "$full"
    expect_one_line_error "a full instance directory" 125 "No space left|space"
else
    echo "note: not root or no tmpfs mount here: the full-directory case is not checked"
fi
check "nothing is left in the instance directory" test -z "$(ls -A "$KVMSANDBOX_INSTANCE_DIR" 2>/dev/null)"

finish
