// fuzz_p9_server: the input is a sequence of 9P2000.L messages, each framed
// by its own size[4] field, handed one by one to a fresh P9Server whose share
// is a small scratch tree (files, directories, a fifo, a hidden file and
// symlinks to "/", "..", and out of the share).
//
// Per message:
//  - the bytes are decoded with virtio/9p/wire.h directly, by the message type's
//    field layout; a message that decodes cleanly must re-encode to the same
//    bytes, and re-encoding it into a buffer one byte short must overflow;
//  - the server's reply must fit the writable buffers, carry its own length
//    in size[4], the request's tag, type request+1 or Rlerror, and a body that
//    decodes exactly by the reply's layout.
// The message's tag picks how the request and response buffers are split into
// segments (the guest's scatter/gather lists), see Layout below.
//
// Set FUZZ_P9_TRACE=1 to see each request and its reply's type (or errno).
//
// Per input: the share is rebuilt from scratch (so every input runs from the
// same state), and the harness checks that nothing changed next to the share
// (a canary directory beside it, reached by "../canary" from the root) and
// that the server leaked no file descriptor.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "virtio/9p/server.h"
#include "virtio/9p/wire.h"

namespace {

using namespace kvmsandbox;
using namespace kvmsandbox::p9;
namespace fs = std::filesystem;

constexpr uint32_t kMaxMsize = 65536;
constexpr size_t kMaxMessages = 256;

uint16_t le16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] | p[1] << 8);
}

// ---- the scratch tree --------------------------------------------------------

struct Sandbox {
    std::string base;    // mkdtemp: holds share/ and canary/ and nothing else
    std::string share;   // the server's root
    std::string canary;  // must never change
    struct stat base_st {};
    struct stat secret_st {};
};
Sandbox* g_sandbox = nullptr;

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "fuzz_p9_server: %s: %s\n", what.c_str(), std::strerror(errno));
    std::abort();
}

void write_file(const std::string& path, std::string_view data, mode_t mode) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) die("create " + path);
    if (write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
        die("write " + path);
    close(fd);
    if (chmod(path.c_str(), mode) < 0) die("chmod " + path);
}

void make_dir(const std::string& path) {
    if (mkdir(path.c_str(), 0755) < 0) die("mkdir " + path);
    if (chmod(path.c_str(), 0755) < 0) die("chmod " + path);
}

void make_symlink(const char* target, const std::string& path) {
    if (symlink(target, path.c_str()) < 0) die("symlink " + path);
}

void populate_share(const std::string& s) {
    make_dir(s);
    write_file(s + "/file", "hello, 9p\n", 0644);
    write_file(s + "/empty", "", 0644);
    write_file(s + "/readonly", "read only\n", 0444);
    write_file(s + "/exec", "#!/bin/sh\nexit 0\n", 0755);
    if (link((s + "/file").c_str(), (s + "/hardlink").c_str()) < 0) die("link");
    make_dir(s + "/dir");
    write_file(s + "/dir/nested", "nested\n", 0600);
    write_file(s + "/dir/hidden", "secret\n", 0600);  // Options::hidden
    make_dir(s + "/dir/sub");
    make_dir(s + "/emptydir");
    if (mkfifo((s + "/fifo").c_str(), 0644) < 0) die("mkfifo");
    make_symlink("/", s + "/root");
    make_symlink("..", s + "/up");
    make_symlink("../canary/secret", s + "/escape");
    make_symlink("file", s + "/filelink");
    make_symlink("../dir", s + "/dir/loop");
    make_symlink("nowhere", s + "/dangling");
}

// Makes every directory under `p` writable and searchable again (a guest may
// have chmod'ed one to 0), so the tree can be removed without root.
void make_removable(const fs::path& p) {
    std::error_code ec;
    if (fs::symlink_status(p, ec).type() != fs::file_type::directory) return;
    chmod(p.c_str(), 0700);
    for (const auto& e : fs::directory_iterator(p, ec)) make_removable(e.path());
}

void reset_share() {
    std::error_code ec;
    fs::remove_all(g_sandbox->share, ec);
    if (ec) {
        make_removable(g_sandbox->share);
        fs::remove_all(g_sandbox->share, ec);
        if (ec) die("cannot remove " + g_sandbox->share + ": " + ec.message());
    }
    populate_share(g_sandbox->share);
}

std::set<std::string> list_dir(const std::string& path) {
    std::set<std::string> names;
    DIR* d = opendir(path.c_str());
    if (!d) die("opendir " + path);
    while (dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.insert(n);
    }
    closedir(d);
    return names;
}

size_t count_fds() {
    // opendir's own descriptor is counted every time alike.
    size_t n = 0;
    DIR* d = opendir("/proc/self/fd");
    if (!d) die("opendir /proc/self/fd");
    while (readdir(d)) ++n;
    closedir(d);
    return n;
}

bool same_inode_state(const struct stat& a, const struct stat& b) {
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_mode == b.st_mode &&
           a.st_uid == b.st_uid && a.st_gid == b.st_gid && a.st_nlink == b.st_nlink &&
           a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
           a.st_mtim.tv_nsec == b.st_mtim.tv_nsec && a.st_ctim.tv_sec == b.st_ctim.tv_sec &&
           a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

// Nothing beside the share may change: base holds exactly share/ and canary/
// (its mode and owner as created), canary/ holds exactly the untouched secret.
void check_outside_unchanged() {
    const Sandbox& sb = *g_sandbox;
    FUZZ_CHECK((list_dir(sb.base) == std::set<std::string>{"canary", "share"}));
    FUZZ_CHECK((list_dir(sb.canary) == std::set<std::string>{"secret"}));
    struct stat st {};
    FUZZ_CHECK(lstat(sb.base.c_str(), &st) == 0);
    FUZZ_CHECK(st.st_mode == sb.base_st.st_mode && st.st_uid == sb.base_st.st_uid &&
               st.st_gid == sb.base_st.st_gid);
    FUZZ_CHECK(llistxattr(sb.base.c_str(), nullptr, 0) <= 0);
    FUZZ_CHECK(lstat((sb.canary + "/secret").c_str(), &st) == 0);
    FUZZ_CHECK(same_inode_state(st, sb.secret_st));
    FUZZ_CHECK(llistxattr((sb.canary + "/secret").c_str(), nullptr, 0) <= 0);
}

void remove_sandbox() {
    if (!g_sandbox) return;
    std::error_code ec;
    make_removable(g_sandbox->base);
    fs::remove_all(g_sandbox->base, ec);
}

// Where the scratch tree goes: $FUZZ_P9_SCRATCH, else /dev/shm (tmpfs: ten
// times the executions per second of a disk filesystem), else $TMPDIR or /tmp.
std::string scratch_parent() {
    if (const char* d = std::getenv("FUZZ_P9_SCRATCH"); d && *d) return d;
    struct stat st {};
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
        return "/dev/shm";
    if (const char* d = std::getenv("TMPDIR"); d && *d) return d;
    return "/tmp";
}

void setup_sandbox() {
    std::string tmpl = scratch_parent() + "/fuzz_p9_server.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) die("mkdtemp " + tmpl);
    g_sandbox = new Sandbox;
    g_sandbox->base = buf.data();
    g_sandbox->share = g_sandbox->base + "/share";
    g_sandbox->canary = g_sandbox->base + "/canary";
    std::atexit(remove_sandbox);
    make_dir(g_sandbox->canary);
    write_file(g_sandbox->canary + "/secret", "outside the share\n", 0644);
    if (chmod(g_sandbox->canary.c_str(), 0755) < 0) die("chmod canary");
    populate_share(g_sandbox->share);
    if (lstat(g_sandbox->base.c_str(), &g_sandbox->base_st) < 0) die("stat base");
    if (lstat((g_sandbox->canary + "/secret").c_str(), &g_sandbox->secret_st) < 0)
        die("stat secret");
}

// ---- wire-level decoding -----------------------------------------------------

// Field layouts: b u8, w u16, d u32, q u64, s string, Q qid, W u16 count +
// that many strings, D u32 count + that many bytes, R u32 count + that many
// bytes of readdir entries.
struct Layout {
    uint8_t type;
    const char* fields;
};

constexpr Layout kRequestLayouts[] = {
    {kTversion, "ds"},         {kTauth, "dssd"},     {kTattach, "ddssd"},     {kTflush, "w"},
    {kTwalk, "ddW"},           {kTlopen, "dd"},      {kTlcreate, "dsddd"},    {kTsymlink, "dssd"},
    {kTmknod, "dsdddd"},       {kTrename, "dds"},    {kTreadlink, "d"},       {kTgetattr, "dq"},
    {kTsetattr, "dddddqqqqq"}, {kTxattrwalk, "dds"}, {kTxattrcreate, "dsqd"}, {kTreaddir, "dqd"},
    {kTfsync, "dd"},           {kTlock, "dbdqqds"},  {kTgetlock, "dbqqds"},   {kTlink, "dds"},
    {kTmkdir, "dsdd"},         {kTrenameat, "dsds"}, {kTunlinkat, "dsd"},     {kTread, "dqd"},
    {kTwrite, "dqD"},          {kTclunk, "d"},       {kTremove, "d"},         {kTstatfs, "d"},
};

// Rwalk is checked on its own (a count of qids).
constexpr Layout kReplyLayouts[] = {
    {kRlerror, "d"}, {kRversion, "ds"},  {kRauth, "Q"},        {kRattach, "Q"},
    {kRflush, ""},   {kRlopen, "Qd"},    {kRlcreate, "Qd"},    {kRsymlink, "Q"},
    {kRmknod, "Q"},  {kRrename, ""},     {kRreadlink, "s"},    {kRgetattr, "qQdddqqqqqqqqqqqqqqq"},
    {kRsetattr, ""}, {kRxattrwalk, "q"}, {kRxattrcreate, ""},  {kRreaddir, "R"},
    {kRfsync, ""},   {kRlock, "b"},      {kRgetlock, "bqqds"}, {kRlink, ""},
    {kRmkdir, "Q"},  {kRrenameat, ""},   {kRunlinkat, ""},     {kRread, "D"},
    {kRwrite, "d"},  {kRclunk, ""},      {kRremove, ""},       {kRstatfs, "ddqqqqqqd"},
};

// The field layout of a message type, nullptr if the table has none.
const char* find_layout(std::span<const Layout> table, uint8_t type) {
    for (const Layout& l : table)
        if (l.type == type) return l.fields;
    return nullptr;
}

struct Field {
    char kind = 0;
    uint64_t num = 0;
    std::string_view str;
    std::span<const uint8_t> bytes;
    Qid qid;
};

// Decodes `body` by `layout` (repeated while bytes remain when `repeat`),
// checking the Reader's own guarantees on the way.
std::vector<Field> decode(std::span<const uint8_t> body, const char* layout, bool repeat,
                          Reader& r) {
    std::vector<Field> fields;
    auto inside = [&](const void* p, size_t n) {
        auto* b = static_cast<const uint8_t*>(p);
        return n == 0 || (b >= body.data() && b + n <= body.data() + body.size());
    };
    do {
        for (const char* k = layout; *k && r.ok(); ++k) {
            Field f;
            f.kind = *k;
            switch (*k) {
                case 'b':
                    f.num = r.u8();
                    break;
                case 'w':
                    f.num = r.u16();
                    break;
                case 'd':
                    f.num = r.u32();
                    break;
                case 'q':
                    f.num = r.u64();
                    break;
                case 'Q':
                    f.qid = r.qid();
                    break;
                case 's':
                    f.str = r.str(65535);
                    FUZZ_CHECK(inside(f.str.data(), f.str.size()));
                    break;
                case 'W': {
                    uint16_t n = r.u16();
                    f.num = n;
                    fields.push_back(f);
                    for (uint16_t i = 0; i < n && r.ok(); ++i) {
                        Field s;
                        s.kind = 's';
                        s.str = r.str(65535);
                        FUZZ_CHECK(inside(s.str.data(), s.str.size()));
                        fields.push_back(s);
                    }
                    continue;
                }
                case 'D':
                case 'R':
                    f.num = r.u32();
                    f.bytes = r.bytes(f.num);
                    FUZZ_CHECK(!r.ok() || f.bytes.size() == f.num);
                    FUZZ_CHECK(inside(f.bytes.data(), f.bytes.size()));
                    break;
                default:
                    FUZZ_CHECK(false);
            }
            FUZZ_CHECK(r.offset() + r.remaining() == body.size());
            if (r.ok()) fields.push_back(f);
        }
    } while (repeat && r.ok() && r.remaining() > 0);
    if (!r.ok()) {
        // The first error latches: every later read yields nothing.
        const int err = r.error();
        FUZZ_CHECK(err == EPROTO || err == ENAMETOOLONG);
        const size_t at = r.offset();
        FUZZ_CHECK(r.u8() == 0 && r.u16() == 0 && r.u32() == 0 && r.u64() == 0);
        FUZZ_CHECK(r.str(65535).empty() && r.bytes(0).empty() && r.qid() == Qid{});
        FUZZ_CHECK(r.error() == err && r.offset() == at);
    }
    return fields;
}

// Encodes a header and `fields` with a Writer into `out`; returns finish().
size_t encode(std::span<uint8_t> out, uint8_t type, uint16_t tag,
              const std::vector<Field>& fields) {
    Writer w(out);
    w.begin(type, tag);
    for (const Field& f : fields) {
        switch (f.kind) {
            case 'b':
                w.u8(static_cast<uint8_t>(f.num));
                break;
            case 'w':
            case 'W':
                w.u16(static_cast<uint16_t>(f.num));
                break;
            case 'd':
                w.u32(static_cast<uint32_t>(f.num));
                break;
            case 'q':
                w.u64(f.num);
                break;
            case 'Q':
                w.qid(f.qid);
                break;
            case 's':
                w.str(f.str);
                break;
            case 'D':
            case 'R':
                w.u32(static_cast<uint32_t>(f.num));
                w.bytes(f.bytes);
                break;
        }
        FUZZ_CHECK(w.size() <= w.capacity());
    }
    const bool overflowed = w.overflowed();
    const size_t n = w.finish();
    FUZZ_CHECK(overflowed ? n == 0 : n == w.size());
    FUZZ_CHECK(w.size() <= out.size());
    return n;
}

void check_wire(std::span<const uint8_t> msg) {
    auto h = parse_header(msg, kMaxMsize);
    if (h) {
        FUZZ_CHECK(h->size == msg.size() && h->size >= kHeaderSize && h->size <= kMaxMsize);
        FUZZ_CHECK(h->type == msg[4] && h->tag == le16(msg.data() + 5));
    } else {
        FUZZ_CHECK(h.error() == EPROTO || h.error() == EMSGSIZE);
    }
    // The split form (first bytes + total) agrees with the contiguous one.
    auto h2 = parse_header(msg.first(std::min(msg.size(), kHeaderSize)), msg.size(), kMaxMsize);
    FUZZ_CHECK(h.has_value() == h2.has_value());
    if (h && h2) FUZZ_CHECK(h->size == h2->size && h->type == h2->type && h->tag == h2->tag);
    if (!h2) FUZZ_CHECK(h.error() == h2.error());
    if (msg.size() < kHeaderSize) return;

    const uint8_t type = msg[4];
    const uint16_t tag = le16(msg.data() + 5);
    const auto body = msg.subspan(kHeaderSize);
    Reader r(body);
    // Anything else (R-messages, unknown types): a mix of every field kind,
    // repeated over the whole body.
    const char* layout = find_layout(kRequestLayouts, type);
    std::vector<Field> fields = decode(body, layout ? layout : "bwdqsQD", layout == nullptr, r);
    if (!r.ok()) return;

    // Round trip: what decoded re-encodes to the same bytes.
    const size_t used = kHeaderSize + r.offset();
    std::vector<uint8_t> again(used);
    const size_t n = encode(again, type, tag, fields);
    FUZZ_CHECK(n == used);
    FUZZ_CHECK(std::equal(again.begin() + 4, again.end(), msg.begin() + 4));
    FUZZ_CHECK(load_le32(again.data()) == used);
    // One byte short: the Writer must notice and write nothing past its buffer.
    std::vector<uint8_t> shorter(used - 1);
    FUZZ_CHECK(encode(shorter, type, tag, fields) == 0);
}

// ---- request/response buffers ------------------------------------------------

// How a message's buffers are segmented, from its tag (the harness's only
// knob besides the bytes; Tversion's NOTAG is plain):
//   tag % 8 == 1: request split after the header, response as [11, rest]
//   tag % 8 == 2: request in 3-byte pieces, response in 29-byte pieces (8 KiB)
//   tag % 8 == 3: one small response segment of (tag >> 3) % 128 bytes
//   otherwise:   one segment each, response kMaxMsize bytes
struct Buffers {
    std::vector<std::vector<uint8_t>> req_store, resp_store;
    std::vector<std::span<uint8_t>> req, resp;
    size_t resp_total = 0;
};

void split(std::vector<std::vector<uint8_t>>& store, std::vector<std::span<uint8_t>>& spans,
           std::span<const uint8_t> data, size_t total, const std::vector<size_t>& pieces) {
    size_t at = 0;
    size_t i = 0;
    while (at < total) {
        size_t n = i < pieces.size() ? pieces[i] : pieces.back();
        n = std::min(n, total - at);
        // Each segment its own allocation: ASan sees any access past its end.
        std::vector<uint8_t> seg(n);
        if (!data.empty()) std::copy_n(data.begin() + at, n, seg.begin());
        store.push_back(std::move(seg));
        at += n;
        ++i;
    }
    for (auto& s : store) spans.emplace_back(s.data(), s.size());
}

Buffers make_buffers(std::span<const uint8_t> msg, uint16_t tag) {
    Buffers b;
    const size_t len = msg.size();
    switch (tag % 8) {
        case 1:
            split(b.req_store, b.req, msg, len, {kHeaderSize, len});
            b.resp_total = kMaxMsize;
            split(b.resp_store, b.resp, {}, b.resp_total, {kReadHeaderSize, kMaxMsize});
            break;
        case 2:
            split(b.req_store, b.req, msg, len, {3});
            b.resp_total = 8192;
            split(b.resp_store, b.resp, {}, b.resp_total, {29});
            break;
        case 3:
            split(b.req_store, b.req, msg, len, {len});
            b.resp_total = (tag >> 3) % 128;
            if (b.resp_total) split(b.resp_store, b.resp, {}, b.resp_total, {b.resp_total});
            break;
        default:
            split(b.req_store, b.req, msg, len, {len});
            b.resp_total = kMaxMsize;
            split(b.resp_store, b.resp, {}, b.resp_total, {kMaxMsize});
            break;
    }
    return b;
}

std::vector<uint8_t> gather_reply(const Buffers& b, size_t n) {
    std::vector<uint8_t> out;
    out.reserve(n);
    for (const auto& s : b.resp) {
        if (out.size() == n) break;
        size_t k = std::min(s.size(), n - out.size());
        out.insert(out.end(), s.begin(), s.begin() + static_cast<ptrdiff_t>(k));
    }
    FUZZ_CHECK(out.size() == n);
    return out;
}

// ---- reply checks ------------------------------------------------------------

void check_reply(std::span<const uint8_t> msg, const std::vector<uint8_t>& reply) {
    const size_t n = reply.size();
    FUZZ_CHECK(n >= kHeaderSize && n <= kMaxMsize);
    FUZZ_CHECK(load_le32(reply.data()) == n);
    const uint8_t type = reply[4];
    const uint16_t tag = le16(reply.data() + 5);
    FUZZ_CHECK(tag == (msg.size() >= kHeaderSize ? le16(msg.data() + 5) : kNoTag));
    if (type != kRlerror) FUZZ_CHECK(msg.size() >= kHeaderSize && type == uint8_t(msg[4] + 1));

    const auto body = std::span<const uint8_t>(reply).subspan(kHeaderSize);
    Reader r(body);
    if (type == kRwalk) {
        const uint16_t nq = r.u16();
        FUZZ_CHECK(nq <= kMaxWalkNames);
        for (uint16_t i = 0; i < nq; ++i) r.qid();
        FUZZ_CHECK(r.ok() && r.remaining() == 0);
        return;
    }
    const char* layout = find_layout(kReplyLayouts, type);
    FUZZ_CHECK(layout != nullptr);
    std::vector<Field> fields = decode(body, layout, false, r);
    FUZZ_CHECK(r.ok() && r.remaining() == 0);

    // The decoded request, for the replies that answer to its fields.
    Reader rq(msg.subspan(kHeaderSize));
    if (type == kRlerror) {
        FUZZ_CHECK(n == kReadHeaderSize);
        FUZZ_CHECK(fields[0].num > 0 && fields[0].num < 4096);
    } else if (type == kRversion) {
        const uint32_t offered = rq.u32();
        FUZZ_CHECK(fields[0].num <= offered && fields[0].num <= kMaxMsize);
        FUZZ_CHECK(fields[1].str == "9P2000.L" || fields[1].str == "unknown");
    } else if (type == kRread) {
        rq.u32();
        rq.u64();
        const uint32_t count = rq.u32();
        FUZZ_CHECK(fields[0].num <= count);
    } else if (type == kRwrite) {
        rq.u32();
        rq.u64();
        const uint32_t count = rq.u32();
        FUZZ_CHECK(fields[0].num <= count);
    } else if (type == kRreaddir) {
        rq.u32();
        rq.u64();
        const uint32_t count = rq.u32();
        FUZZ_CHECK(fields[0].num <= count);
        Reader e(fields[0].bytes);
        while (e.ok() && e.remaining() > 0) {
            e.qid();
            e.u64();
            e.u8();
            std::string_view name = e.str(kMaxNameLen);
            FUZZ_CHECK(e.ok() && !name.empty() && name.find('/') == std::string_view::npos);
        }
        FUZZ_CHECK(e.ok());
    }
}

void run_message(P9Server& server, std::span<const uint8_t> msg) {
    check_wire(msg);
    const uint16_t tag = msg.size() >= kHeaderSize ? le16(msg.data() + 5) : kNoTag;
    Buffers b = make_buffers(msg, tag);
    const size_t n = server.handle(P9Server::IoVecs(b.req), P9Server::IoVecs(b.resp));
    FUZZ_CHECK(n <= b.resp_total);
    if (b.resp_total < kReadHeaderSize) {
        FUZZ_CHECK(n == 0);
        return;
    }
    FUZZ_CHECK(n > 0);
    const std::vector<uint8_t> reply = gather_reply(b, n);
    check_reply(msg, reply);
    // FUZZ_P9_TRACE=1: one line per message, for writing seeds and debugging.
    static const bool trace = std::getenv("FUZZ_P9_TRACE") != nullptr;
    if (trace) {
        std::fprintf(stderr, "T%u tag %#x (%zu bytes) -> R%u (%zu bytes)",
                     msg.size() > 4 ? msg[4] : 0, tag, msg.size(), reply[4], n);
        if (reply[4] == kRlerror)
            std::fprintf(stderr, " %s", std::strerror(int(load_le32(&reply[7]))));
        std::fprintf(stderr, "\n");
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    setup_sandbox();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    reset_share();
    // Counted here, not once at start-up: libFuzzer itself opens and closes
    // files between inputs.
    const size_t fds = count_fds();
    {
        int root = open(g_sandbox->share.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0) die("open share");
        P9Server::Options opt;
        opt.max_msize = kMaxMsize;
        opt.max_fids = 64;
        opt.share_name = "share";
        opt.max_xattr_bytes = size_t{256} * 1024;
        opt.hidden = {"dir/hidden"};
        auto server = P9Server::create(UniqueFd(root), false, opt);
        FUZZ_CHECK(server.has_value());

        size_t pos = 0;
        for (size_t i = 0; pos < size && i < kMaxMessages; ++i) {
            // A message is as long as its size field says, within what is left
            // (a short one exercises the framing checks) and at least 4 bytes.
            const size_t left = size - pos;
            size_t len = left;
            if (left >= 4) len = std::clamp<size_t>(load_le32(data + pos), 4, left);
            // Its own allocation, so ASan catches a read past its end.
            std::vector<uint8_t> msg(data + pos, data + pos + len);
            pos += len;
            run_message(**server, msg);
        }
        FUZZ_CHECK((*server)->fid_count() <= opt.max_fids);
    }
    check_outside_unchanged();
    FUZZ_CHECK(count_fds() == fds);
    return 0;
}
