#!/usr/bin/env python3
# check_layers_test.py: proves scripts/check-layers.py can fail. Builds small
# fake trees: a clean one must pass, and each tree with one forbidden include
# must fail with a line naming that file and line. One process (the cases
# run the checker in-process) plus two runs of the script itself for its
# exit status. ctest: lint.layers-selftest.
import importlib.util
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "check-layers.py")
spec = importlib.util.spec_from_file_location("check_layers", SCRIPT)
check_layers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_layers)

# A tiny tree that keeps every rule.
CLEAN = {
    "src/base/result.h": "#pragma once\n",
    "src/kvm/vm.h": '#include "base/result.h"\n',
    "src/protocol/guest_protocol.h": '#include "base/result.h"\n',
    "src/virtio/transport/device.h": '#include "base/result.h"\n',
    "src/virtio/net/net.h": '#include "virtio/transport/device.h"\n#include "base/result.h"\n',
    "src/virtio/block/block.h": '#include "virtio/transport/device.h"\n',
    "src/sandbox/session.h": '#include "virtio/net/net.h"\n#include "kvm/vm.h"\n',
    "src/cli/run.cpp": '#include "sandbox/session.h"\n#include "virtio/block/block.h"\n',
    "src/main.cpp": '#include "cli/run.h"\n',
    "guest-init/main.cpp":
        '#include "guest-init/io.h"\n#include "protocol/guest_protocol.h"\n#include "base/result.h"\n',
    "guest-init/io.h": "#pragma once\n",
}

# name, file, the line appended to it, the line number the check must name
# (None: that appended line).
CASES = [
    ("base-includes-cli", "src/base/result.h", '#include "cli/run.h"', None),
    ("vmm-includes-sandbox", "src/vmm/machine.cpp", '#include "sandbox/session.h"', None),
    ("kvm-includes-app", "src/kvm/vm.h", '#include "app/launch.h"', None),
    ("device-includes-device", "src/virtio/net/net.h", '#include "virtio/block/block.h"', None),
    ("transport-includes-device", "src/virtio/transport/device.h", '#include "virtio/net/net.h"',
     None),
    ("protocol-includes-sandbox", "src/protocol/guest_protocol.h", '#include "sandbox/session.h"',
     None),
    ("guest-init-includes-kvm", "guest-init/main.cpp", '#include "kvm/vm.h"', None),
    ("unknown-folder", "src/newlayer/thing.cpp", '#include "base/result.h"', 1),
    ("unknown-target", "src/cli/run.cpp", '#include "nowhere/thing.h"', None),
]


def make_tree(root, extra=None):
    files = dict(CLEAN)
    if extra:
        path, text = extra
        files[path] = files.get(path, "") + "// filler\n" + text + "\n"
    for path, text in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
    return files


def main():
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        clean = os.path.join(tmp, "clean")
        make_tree(clean)
        _, violations, _ = check_layers.check(clean, strict=True)
        if violations:
            print(f"FAIL: clean tree: {violations}")
            failures += 1
        else:
            print("ok: clean tree passes")
        for name, path, text, line in CASES:
            root = os.path.join(tmp, name)
            files = make_tree(root, (path, text))
            if line is None:
                line = files[path].count("\n")
            _, violations, _ = check_layers.check(root, strict=True)
            want = f"{path}:{line}: "
            hits = [v for v in violations if v.startswith(want)]
            if len(violations) != 1 or not hits:
                print(f"FAIL: {name}: expected one violation at {want!r}, got {violations}")
                failures += 1
            else:
                print(f"ok: {name}: {hits[0]}")
        # The script itself: exit 1 with the line on stdout for a bad tree,
        # exit 0 for the clean one.
        bad = os.path.join(tmp, CASES[0][0])
        for tree, want_rc in ((bad, 1), (clean, 0)):
            run = subprocess.run([sys.executable, SCRIPT, tree], capture_output=True, text=True)
            if run.returncode != want_rc:
                print(f"FAIL: {SCRIPT} {tree}: exit {run.returncode}, expected {want_rc}: "
                      f"{run.stdout}{run.stderr}")
                failures += 1
            elif want_rc == 1 and "src/base/result.h:3: " not in run.stdout:
                print(f"FAIL: {SCRIPT} {tree}: no line for src/base/result.h:3 in {run.stdout}")
                failures += 1
            else:
                print(f"ok: the script exits {want_rc} on the {os.path.basename(tree)} tree")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
