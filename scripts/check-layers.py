#!/usr/bin/env python3
# check-layers.py: the include rules of the tree (DESIGN.md section 3), checked.
#
#   scripts/check-layers.py [--strict] [ROOT]
#
# Reads every #include "..." of ROOT/src and ROOT/guest-init (ROOT defaults to
# the repository this script is in) and prints one line per include that
# breaks a rule, "file:line: what includes what: why it is forbidden", then
# exits 1; exits 0 when there is none. The rules:
#   - a lower layer never includes an upper one (base, kvm, arch, devices,
#     virtio, vmm never include app, cli, control, sandbox);
#   - one virtio device folder never includes another;
#   - each folder includes only what its row of RULES below names.
# A folder that no row names fails too: a new layer gets its row on purpose.
#
# CMakeLists.txt links the per-layer libraries after the same table (keep the
# two in step); this script catches what the linker cannot: headers.
#
# Trust boundary: none. It only reads the tree; files that are not UTF-8 are
# read with replacement characters.
import argparse
import os
import re
import sys

# Bottom-up. Only used to say "lower includes upper" in a message; what is
# allowed is RULES. protocol and shares sit low: both are contracts that
# stand on base alone, so any layer above may use them.
ORDER = [
    "base",
    "kvm",
    "arch",
    "devices",
    "virtio/transport",
    "virtio/<device>",
    "shares",
    "protocol",
    "boot",
    "hardening",
    "vmm",
    "control",
    "sandbox",
    "app",
    "cli",
    "main.cpp",
    "guest-init",
    "guest-init/embed",
]

# What each folder may include besides itself. "virtio/<device>" stands for
# every folder under src/virtio/ but transport/, on either side.
VIRTIO_ALL = ["virtio/transport", "virtio/<device>"]
RULES = {
    "base": [],
    "kvm": ["base"],
    "arch": ["base", "kvm"],
    "devices": ["base", "kvm", "arch"],
    "virtio/transport": ["base", "kvm", "arch", "devices"],
    # A device stands on the transport, never on a sibling device.
    "virtio/<device>": ["virtio/transport", "base", "devices", "shares"],
    "shares": ["base"],
    # The host-guest contract, shared with guest-init: nothing but base.
    "protocol": ["base"],
    "boot": ["base", "kvm", "arch", "protocol"],
    "hardening": ["base", "kvm"],
    # The machine knows the transport (its slots), not the devices: the
    # launcher wires those in.
    "vmm": ["base", "kvm", "arch", "devices", "virtio/transport"],
    "control": ["base", "kvm", "arch", "devices", *VIRTIO_ALL, "shares", "protocol", "boot",
                "hardening", "vmm"],
    "sandbox": ["base", "kvm", "arch", "devices", *VIRTIO_ALL, "shares", "protocol", "boot",
                "hardening", "vmm", "control"],
    "app": ["base", "kvm", "arch", "devices", *VIRTIO_ALL, "shares", "protocol", "boot",
            "hardening", "vmm", "control", "sandbox"],
    "cli": ["base", "kvm", "arch", "devices", *VIRTIO_ALL, "shares", "protocol", "boot",
            "hardening", "vmm", "control", "sandbox", "app"],
    "main.cpp": ["base", "cli"],
    # The guest's PID 1: a static binary built from guest-init/ alone, so
    # only header-only pieces of the host tree.
    "guest-init": ["protocol", "base"],
    # Host side: the embedded binary behind boot/guest_init_blob.h.
    "guest-init/embed": ["boot", "base"],
}

# Includes that break a rule today, each waiting for its fix (reported, not
# allowed): they print as "known:" and do not fail the check, any other
# violation does. --strict fails on them too. Remove an entry with its fix.
KNOWN: dict = {}

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
SOURCE_SUFFIXES = (".h", ".hpp", ".cpp", ".cc", ".c", ".inc", ".in", ".S")


def layer_of_src(parts):
    """Layer of a path under src/, given as its components (without src)."""
    if parts == ["main.cpp"]:
        return "main.cpp"
    if len(parts) < 2:
        return None  # a loose file in src/: in no layer
    if parts[0] == "virtio":
        if len(parts) < 3:
            return None
        return "virtio/transport" if parts[1] == "transport" else "virtio/" + parts[1]
    return parts[0]


def layer_of_file(rel):
    parts = rel.split("/")
    if parts[0] == "src":
        return layer_of_src(parts[1:])
    if parts[0] == "guest-init":
        return "guest-init/embed" if len(parts) > 2 and parts[1] == "embed" else "guest-init"
    return None


def layer_of_include(inc, includer_rel):
    """Layer an #include "inc" names; the tree spells includes from src/ or
    from the repository root (guest-init/...). A bare "name.h" is the
    includer's own folder."""
    if "/" not in inc:
        return layer_of_file(os.path.dirname(includer_rel) + "/" + inc)
    if inc.startswith("guest-init/"):
        return layer_of_file(inc)
    return layer_of_src(inc.split("/"))


def rule_key(layer):
    if layer and layer.startswith("virtio/") and layer != "virtio/transport":
        return "virtio/<device>"
    return layer


def rank(layer):
    key = rule_key(layer)
    return ORDER.index(key) if key in ORDER else None


def why(frm, to):
    """Why frm may not include to (frm has a row in RULES)."""
    allowed = ", ".join(RULES[rule_key(frm)]) or "nothing but itself"
    kf, kt = rule_key(frm), rule_key(to)
    if kf == "virtio/<device>" and kt == "virtio/<device>":
        return f"one virtio device folder never includes another ({frm} may include: {allowed})"
    if rank(frm) is not None and rank(to) is not None and rank(to) > rank(frm):
        return f"a lower layer never includes an upper one ({frm} may include: {allowed})"
    return f"{frm} may include only: {allowed}"


def allowed(frm, to):
    if frm == to:
        return True
    return rule_key(to) in RULES[rule_key(frm)]


def sources(root):
    for top in ("src", "guest-init"):
        base = os.path.join(root, top)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(SOURCE_SUFFIXES):
                    path = os.path.join(dirpath, name)
                    yield os.path.relpath(path, root).replace(os.sep, "/"), path


def check(root, strict):
    violations, known_seen = [], set()
    files = 0
    for rel, path in sources(root):
        files += 1
        frm = layer_of_file(rel)
        if rule_key(frm) not in RULES:
            violations.append(f"{rel}:1: {rel} is in no layer of the rule table "
                              "(add its folder to RULES in scripts/check-layers.py)")
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                inc = m.group(1)
                to = layer_of_include(inc, rel)
                if to is None or rule_key(to) not in RULES:
                    msg = f'{rel}:{lineno}: {frm} includes "{inc}", which is in no layer'
                elif allowed(frm, to):
                    continue
                else:
                    msg = f'{rel}:{lineno}: {frm} includes {to} ("{inc}"): {why(frm, to)}'
                known = KNOWN.get((rel, inc))
                if known and not strict:
                    known_seen.add((rel, inc))
                    print(f"known: {msg} [{known}]")
                else:
                    violations.append(msg)
    return files, violations, known_seen


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="Check the include rules between layers.")
    ap.add_argument("root", nargs="?", default=os.path.dirname(here),
                    help="tree to check (holds src/ and guest-init/)")
    ap.add_argument("--strict", action="store_true", help="fail on the KNOWN violations too")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.root, "src")):
        print(f"check-layers: {args.root} has no src/", file=sys.stderr)
        return 2
    files, violations, known_seen = check(args.root, args.strict)
    for v in violations:
        print(v)
    if not args.strict:
        for rel, inc in sorted(set(KNOWN) - known_seen):
            if os.path.exists(os.path.join(args.root, rel)):
                print(f'note: {rel} no longer includes "{inc}": remove it from KNOWN')
    if violations:
        print(f"check-layers: {len(violations)} forbidden include(s) in {files} files",
              file=sys.stderr)
        return 1
    print(f"check-layers: {files} files, no forbidden include")
    return 0


if __name__ == "__main__":
    sys.exit(main())
