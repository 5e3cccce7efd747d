#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/ (run from anywhere).

The seeds are checked in; this script only documents how they were made and
remakes them after a change of input format. Standard library only.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- 9P2000.L ---------------------------------------------------------------

NOFID = 0xFFFFFFFF
NOTAG = 0xFFFF
(Tstatfs, Tlopen, Tlcreate, Tsymlink, Tmknod, Trename, Treadlink, Tgetattr, Tsetattr) = (
    8, 12, 14, 16, 18, 20, 22, 24, 26)
Txattrwalk, Txattrcreate, Treaddir, Tfsync, Tlock, Tgetlock = 30, 32, 40, 50, 52, 54
Tlink, Tmkdir, Trenameat, Tunlinkat = 70, 72, 74, 76
Tversion, Tattach, Tflush, Twalk, Tread, Twrite, Tclunk, Tremove = 100, 104, 108, 110, 116, 118, 120, 122
O_RDONLY, O_RDWR, O_CREAT, O_DIRECTORY = 0, 2, 0o100, 0o200000


def s(text):
    b = text.encode()
    return struct.pack("<H", len(b)) + b


def msg(mtype, tag, body):
    return struct.pack("<IBH", 7 + len(body), mtype, tag) + body


class Session:
    """Builds a message sequence; tags count up in steps of 8 (tag % 8 == 0:
    plain single-segment buffers, see fuzz_p9_server.cpp)."""

    def __init__(self):
        self.out = b""
        self.tag = 0

    def t(self, mtype, body, tag=None):
        if tag is None:
            self.tag += 8
            tag = self.tag
        self.out += msg(mtype, tag, body)
        return self

    def version(self, msize=65536, v="9P2000.L"):
        return self.t(Tversion, struct.pack("<I", msize) + s(v), NOTAG)

    def attach(self, fid=0):
        return self.t(Tattach, struct.pack("<II", fid, NOFID) + s("root") + s("") + struct.pack("<I", 0))

    def walk(self, fid, newfid, names, tag=None):
        return self.t(Twalk, struct.pack("<IIH", fid, newfid, len(names)) + b"".join(s(n) for n in names), tag)

    def lopen(self, fid, flags):
        return self.t(Tlopen, struct.pack("<II", fid, flags))

    def read(self, fid, off, count, tag=None):
        return self.t(Tread, struct.pack("<IQI", fid, off, count), tag)

    def write(self, fid, off, data, tag=None):
        return self.t(Twrite, struct.pack("<IQI", fid, off, len(data)) + data, tag)

    def readdir(self, fid, off, count, tag=None):
        return self.t(Treaddir, struct.pack("<IQI", fid, off, count), tag)

    def clunk(self, fid):
        return self.t(Tclunk, struct.pack("<I", fid))

    def start(self):
        return self.version().attach(0)


def p9_seeds():
    T = "fuzz_p9_server"
    write(T, "version_only", Session().version().out)
    write(T, "read_file", Session().start().walk(0, 1, ["file"]).lopen(1, O_RDONLY)
          .read(1, 0, 100).clunk(1).out)
    write(T, "readdir", Session().start().walk(0, 1, ["dir"]).lopen(1, O_RDONLY | O_DIRECTORY)
          .readdir(1, 0, 4096).out)
    # The same reads with segmented buffers (tag % 8 == 1, 2) and a short
    # response (tag % 8 == 3, 40 bytes).
    write(T, "read_segmented", Session().start().walk(0, 1, ["file"]).lopen(1, O_RDONLY)
          .read(1, 0, 100, tag=0x101).read(1, 2, 100, tag=0x102).read(1, 0, 100, tag=(5 << 3) | 3)
          .walk(0, 2, [], tag=0x202).lopen(2, O_RDONLY | O_DIRECTORY)
          .readdir(2, 0, 8192, tag=0x302).readdir(2, 0, 8192, tag=(40 << 3) | 3).out)
    write(T, "create_write", Session().start().walk(0, 1, [])
          .t(Tlcreate, struct.pack("<I", 1) + s("new") + struct.pack("<III", O_RDWR | O_CREAT, 0o644, 0))
          .write(1, 0, b"some data").write(1, 4, b"more", tag=0x201).read(1, 0, 64)
          .t(Tgetattr, struct.pack("<IQ", 1, 0x7FF))
          .t(Tsetattr, struct.pack("<IIIIIQQQQQ", 1, 1 | 8, 0o600, 0, 0, 3, 0, 0, 0, 0))
          .t(Tfsync, struct.pack("<II", 1, 0)).clunk(1).out)
    write(T, "escapes", Session().start()
          .walk(0, 1, [".."]).walk(0, 2, ["up"]).walk(0, 3, ["root"]).walk(0, 4, ["escape"])
          .t(Treadlink, struct.pack("<I", 4)).lopen(4, O_RDONLY).walk(2, 5, ["canary"])
          .walk(0, 6, ["dir", "loop", "nested"]).walk(0, 7, ["dir", "..", "..", "canary"])
          .walk(0, 8, ["dir", "hidden"]).walk(0, 9, ["fifo"]).lopen(9, O_RDONLY).out)
    write(T, "namespace_ops", Session().start()
          .t(Tmkdir, struct.pack("<I", 0) + s("d2") + struct.pack("<II", 0o755, 0))
          .t(Trenameat, struct.pack("<I", 0) + s("file") + struct.pack("<I", 0) + s("renamed"))
          .t(Tunlinkat, struct.pack("<I", 0) + s("empty") + struct.pack("<I", 0))
          .t(Tunlinkat, struct.pack("<I", 0) + s("emptydir") + struct.pack("<I", 0x200))
          .t(Tlink, struct.pack("<II", 0, 0) + s("selflink"))
          .walk(0, 3, ["renamed"]).t(Tlink, struct.pack("<II", 0, 3) + s("newlink"))
          .t(Tsymlink, struct.pack("<I", 0) + s("sl") + s("../canary/secret") + struct.pack("<I", 0))
          .t(Tmknod, struct.pack("<I", 0) + s("fifo2") + struct.pack("<IIII", 0o10644, 0, 0, 0))
          .walk(0, 1, ["exec"]).t(Trename, struct.pack("<II", 1, 0) + s("moved"))
          .walk(0, 2, ["readonly"]).t(Tremove, struct.pack("<I", 2)).out)
    write(T, "xattr_lock_statfs", Session().start().walk(0, 1, ["file"])
          .t(Txattrcreate, struct.pack("<I", 1) + s("user.k") + struct.pack("<QI", 3, 0))
          .write(1, 0, b"abc").clunk(1).walk(0, 2, ["file"])
          .t(Txattrwalk, struct.pack("<II", 2, 3) + s("user.k")).read(3, 0, 64)
          .t(Txattrwalk, struct.pack("<II", 2, 4) + s("")).read(4, 0, 256)
          .lopen(2, O_RDWR)
          .t(Tlock, struct.pack("<IBIQQI", 2, 1, 0, 0, 10, 42) + s("client"))
          .t(Tgetlock, struct.pack("<IBQQI", 2, 0, 0, 10, 43) + s("other"))
          .t(Tstatfs, struct.pack("<I", 0)).t(Tflush, struct.pack("<H", 8)).out)
    # Framing errors: size beyond the data, size below a header, no Tversion.
    write(T, "bad_framing", msg(Tclunk, 1, struct.pack("<I", 0)) + struct.pack("<IBH", 7, 200, 3)
          + struct.pack("<I", 2) + struct.pack("<IBHI", 1000, Tread, 9, 1))


# ---- virtqueue --------------------------------------------------------------

A = 0x10000
B = 0x40000
DESC, AVAIL, USED = 0x0, 0x400, 0x500
NEXT, WRITE, INDIRECT = 1, 2, 4


class Ring:
    def __init__(self, log2size, flags=0, shift=0, bump=0):
        self.size = 1 << log2size
        self.head = bytes([log2size | flags, shift]) + struct.pack("<H", bump)
        self.mem = bytearray(0xc00)
        self.avail = []

    def desc(self, i, addr, length, flags=0, nxt=0, table=DESC):
        struct.pack_into("<QIHH", self.mem, table + 16 * i, addr, length, flags, nxt)
        return self

    def publish(self, head):
        struct.pack_into("<H", self.mem, AVAIL + 4 + 2 * (len(self.avail) % self.size), head)
        self.avail.append(head)
        struct.pack_into("<H", self.mem, AVAIL + 2, len(self.avail))
        return self

    def bytes(self):
        return self.head + bytes(self.mem)


def virtq_seeds():
    T = "fuzz_virtqueue"
    write(T, "simple_chain", Ring(3).desc(0, A + 0x800, 16, NEXT, 1).desc(1, A + 0x900, 32, WRITE)
          .publish(0).bytes())
    write(T, "indirect", Ring(3).desc(2, A + 0xa00, 48, INDIRECT)
          .desc(0, A + 0x800, 8, NEXT, 1, table=0xa00).desc(1, B + 0x10, 100, WRITE | NEXT, 2, table=0xa00)
          .desc(2, A + 0x900, 4, WRITE, table=0xa00).publish(2).bytes())
    r = Ring(2, flags=0x08 | 0x10 | 0x80, shift=1, bump=2)
    r.desc(0, A + 0x800, 10).desc(1, A + 0x810, 20, WRITE).desc(2, A + 0x820, 30, NEXT, 3)
    r.desc(3, B, 0x1000, WRITE)
    write(T, "event_idx_batch", r.publish(0).publish(1).publish(2).publish(0).bytes())
    write(T, "broken_loop", Ring(1).desc(0, A + 0x800, 1, NEXT, 1).desc(1, A + 0x800, 1, NEXT, 0)
          .publish(0).bytes())
    write(T, "bogus_push", Ring(0, flags=0x40, shift=0x80).desc(0, A + 0x800, 64, WRITE).publish(0).bytes())


# ---- bzImage ----------------------------------------------------------------

def bzimage(setup_sects=1, kernel_bytes=512, protocol=0x020F, header_len=0x6A, relocatable=1,
            pref=0x100000, init_size=0x100000, align=0x200000, cmdline_size=2047, tail=4,
            payload=b""):
    setup = ((setup_sects or 4) + 1) * 512
    f = bytearray(setup + kernel_bytes)
    f[0x1F1] = setup_sects
    struct.pack_into("<I", f, 0x1F4, kernel_bytes // 16)
    struct.pack_into("<H", f, 0x1FE, 0xAA55)
    f[0x200] = 0xEB
    f[0x201] = header_len
    f[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", f, 0x206, protocol)
    f[0x211] = 0x01
    struct.pack_into("<I", f, 0x22C, 0x7FFFFFFF)
    struct.pack_into("<I", f, 0x230, align)
    f[0x234] = relocatable
    struct.pack_into("<H", f, 0x236, 3)
    struct.pack_into("<I", f, 0x238, cmdline_size)
    struct.pack_into("<Q", f, 0x258, pref)
    struct.pack_into("<I", f, 0x260, init_size)
    for i in range(setup, len(f)):
        f[i] = (i * 7) & 0xFF
    if payload:
        struct.pack_into("<II", f, 0x248, 0x100, len(payload))
        f[setup + 0x100:setup + 0x100 + len(payload)] = payload
    f[-1] = tail
    return bytes(f)


def bzimage_seeds():
    T = "fuzz_bzimage"
    write(T, "minimal", bzimage())
    write(T, "fixed_address", bzimage(relocatable=0, pref=0x200000))
    write(T, "relocated", bzimage(setup_sects=0, kernel_bytes=1024, pref=0x1000000, init_size=0x300000))
    write(T, "protocol_2_12", bzimage(protocol=0x020C, header_len=0x66, tail=0))
    write(T, "long_cmdline", bzimage(cmdline_size=255, tail=200))
    write(T, "elf", b"\x7fELF\x02\x01\x01" + bytes(57))
    write(T, "vmlinux", vmlinux())
    write(T, "with_payload", bzimage(kernel_bytes=1024, payload=b"\xfd7zXZ\x00" + bytes(10)))


def vmlinux(entry=0x200000, segs=((0x200000, 64, 64, 5), (0x400000, 32, 4096, 6))):
    """An x86-64 ELF executable: one PT_LOAD per (paddr, filesz, memsz, flags)."""
    phoff, data_off = 64, 64 + 56 * len(segs)
    eh = b"\x7fELF\x02\x01\x01" + bytes(9)
    eh += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, entry, phoff, 0, 0, 64, 56, len(segs), 64, 0, 0)
    phs, body = b"", b""
    for paddr, filesz, memsz, flags in segs:
        phs += struct.pack("<IIQQQQQQ", 1, flags, data_off + len(body), paddr, paddr, filesz, memsz, 16)
        body += bytes((i * 3) & 0xFF for i in range(filesz))
    return eh + phs + body


# ---- control socket ---------------------------------------------------------

def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def control_seeds():
    """Byte 0 picks the mode: 0x00 frames fed at once, 0x0E frames fed 7 bytes
    at a time, 0x01 one unframed payload."""
    T = "fuzz_control"
    requests = [b'{"v":1,"cmd":"info"}', b'{"v":1,"cmd":"stat"}', b'{"v":1,"cmd":"pause"}',
                b'{"v":1,"cmd":"debug","nmi":true}',
                b'{"v":1,"cmd":"balloon","op":"inflate","bytes":268435456}',
                b'{"v":1,"cmd":"stop","grace_s":10,"force":false}']
    write(T, "requests", b"\x00" + b"".join(frame(r) for r in requests))
    write(T, "requests_chunked", b"\x0e" + b"".join(frame(r) for r in requests[:3]))
    write(T, "reply_info", b"\x00" + frame(
        b'{"v":1,"ok":true,"name":"dev","kind":"sandbox","pid":4242,"state":"running",'
        b'"cpus":2,"mem_bytes":536870912,"uptime_s":12.5}'))
    write(T, "reply_stat", b"\x01" +
          b'{"v":1,"ok":true,"name":"dev","vmm_rss_bytes":41943040,'
          b'"balloon":{"target_bytes":0,"actual_bytes":0},'
          b'"vcpus":[{"id":0,"exits":1200,"io":800,"mmio":300,"other":100}],'
          b'"devices":[{"name":"virtio-9p","counters":{"requests":77}}]}')
    write(T, "reply_error", b"\x00" + frame(b'{"v":1,"ok":false,"error":"dev is not paused"}'))
    write(T, "escapes", b"\x01" +
          b'{"v":1,"cmd":"echo","s":"\\u00e9\\ud83d\\ude00\\n\\"","n":[-0,1.5e-3,-9223372036854775808],'
          b'"e":{},"a":[],"z":null}')
    write(T, "bad_version", b"\x01" + b'{"v":2,"cmd":"info"}')


if __name__ == "__main__":
    p9_seeds()
    virtq_seeds()
    bzimage_seeds()
    control_seeds()
