#include "virtio/9p/wire.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace kvmsandbox::p9 {
namespace {

TEST(P9Wire, IntegersAreLittleEndian) {
    std::vector<uint8_t> buf(15);
    Writer w(buf);
    w.u8(0x11);
    w.u16(0x2233);
    w.u32(0x44556677);
    w.u64(0x8899AABBCCDDEEFFull);
    ASSERT_FALSE(w.overflowed());
    EXPECT_EQ(w.size(), 15u);
    const std::vector<uint8_t> want = {0x11, 0x33, 0x22, 0x77, 0x66, 0x55, 0x44, 0xFF,
                                       0xEE, 0xDD, 0xCC, 0xBB, 0xAA, 0x99, 0x88};
    EXPECT_EQ(buf, want);

    Reader r(buf);
    EXPECT_EQ(r.u8(), 0x11);
    EXPECT_EQ(r.u16(), 0x2233);
    EXPECT_EQ(r.u32(), 0x44556677u);
    EXPECT_EQ(r.u64(), 0x8899AABBCCDDEEFFull);
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.remaining(), 0u);
}

TEST(P9Wire, QidAndStringRoundTrip) {
    std::vector<uint8_t> buf(64);
    Writer w(buf);
    Qid q{kQtDir, 7, 0x0102030405060708ull};
    w.qid(q);
    w.str("hello");
    w.str("");
    Reader r{std::span(buf).first(w.size())};
    EXPECT_EQ(r.qid(), q);
    EXPECT_EQ(r.str(255), "hello");
    EXPECT_EQ(r.str(255), "");
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(w.size(), kQidSize + 2 + 5 + 2);
}

TEST(P9Wire, ReaderTruncationLatchesError) {
    const uint8_t buf[3] = {1, 2, 3};
    Reader r(buf);
    EXPECT_EQ(r.u16(), 0x0201);
    EXPECT_EQ(r.u32(), 0u);  // only one byte left
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.error(), EPROTO);
    // Later reads keep failing and return zero, never read past the end.
    EXPECT_EQ(r.u8(), 0);
    EXPECT_EQ(r.str(10), "");
    EXPECT_EQ(r.error(), EPROTO);
}

TEST(P9Wire, StringLongerThanBufferIsTruncation) {
    const uint8_t buf[] = {10, 0, 'a', 'b'};  // claims 10 bytes, has 2
    Reader r(buf);
    EXPECT_EQ(r.str(255), "");
    EXPECT_EQ(r.error(), EPROTO);
}

TEST(P9Wire, StringOverCapIsNameTooLong) {
    std::vector<uint8_t> buf(2 + 300);
    Writer w(buf);
    w.str(std::string(300, 'x'));
    Reader r(buf);
    EXPECT_EQ(r.str(kMaxNameLen), "");
    EXPECT_EQ(r.error(), ENAMETOOLONG);

    Reader r2(buf);
    EXPECT_EQ(r2.str(kMaxPathLen).size(), 300u);
    EXPECT_TRUE(r2.ok());
}

TEST(P9Wire, BytesBounded) {
    const uint8_t buf[4] = {1, 2, 3, 4};
    Reader r(buf);
    EXPECT_EQ(r.bytes(3).size(), 3u);
    EXPECT_TRUE(r.bytes(2).empty());
    EXPECT_FALSE(r.ok());
}

TEST(P9Wire, WriterNeverOverflowsBuffer) {
    std::vector<uint8_t> storage(8, 0xAB);
    Writer w{std::span(storage).first(4)};
    w.u16(1);
    w.u32(2);  // does not fit
    EXPECT_TRUE(w.overflowed());
    w.u8(3);  // still refused after overflow
    EXPECT_EQ(w.size(), 2u);
    for (size_t i = 4; i < storage.size(); ++i) EXPECT_EQ(storage[i], 0xAB);

    std::vector<uint8_t> small(3);
    Writer w2(small);
    w2.str("abc");  // 5 bytes needed
    EXPECT_TRUE(w2.overflowed());
    EXPECT_TRUE(w2.reserve(1).empty());
}

TEST(P9Wire, BeginFinishPatchesSize) {
    std::vector<uint8_t> buf(32);
    Writer w(buf);
    w.begin(kRlerror, 0x1234);
    w.u32(EINVAL);
    size_t n = w.finish();
    ASSERT_EQ(n, 11u);
    auto h = parse_header(std::span(buf).first(n), 8192);
    ASSERT_TRUE(h.has_value());
    EXPECT_EQ(h->size, 11u);
    EXPECT_EQ(h->type, kRlerror);
    EXPECT_EQ(h->tag, 0x1234);

    Writer w3{std::span(buf).first(8)};
    w3.begin(kRlerror, 1);
    w3.u32(1);
    EXPECT_EQ(w3.finish(), 0u);  // overflow: no message
}

TEST(P9Wire, HeaderValidation) {
    std::vector<uint8_t> buf(16);
    auto make = [&](uint32_t size) {
        Writer w(buf);
        w.u32(size);
        w.u8(kTclunk);
        w.u16(5);
        w.u32(0);
    };
    make(11);
    EXPECT_TRUE(parse_header(std::span(buf).first(11), 8192).has_value());
    // Size field disagrees with what arrived.
    EXPECT_EQ(parse_header(std::span(buf).first(10), 8192).error(), EPROTO);
    EXPECT_EQ(parse_header(std::span(buf).first(12), 8192).error(), EPROTO);
    make(3);
    EXPECT_EQ(parse_header(std::span(buf).first(3), 8192).error(), EPROTO);
    make(0);
    EXPECT_EQ(parse_header(std::span(buf).first(7), 8192).error(), EPROTO);
    make(11);
    EXPECT_EQ(parse_header(std::span(buf).first(11), 10).error(), EMSGSIZE);
    EXPECT_EQ(parse_header(std::span<const uint8_t>(), 8192).error(), EPROTO);
}

// Every T-message layout the server decodes, encoded and decoded field by
// field: the shapes the tests' client (and the Linux client) put on the wire.
struct Field {
    char kind = 0;  // '1' '2' '4' '8' 's' 'q'
    uint64_t num = 0;
    std::string s = {};
    Qid q = {};
};

std::vector<uint8_t> encode(uint8_t type, uint16_t tag, const std::vector<Field>& fields) {
    std::vector<uint8_t> buf(8192);
    Writer w(buf);
    w.begin(type, tag);
    for (const auto& f : fields) {
        switch (f.kind) {
            case '1':
                w.u8(static_cast<uint8_t>(f.num));
                break;
            case '2':
                w.u16(static_cast<uint16_t>(f.num));
                break;
            case '4':
                w.u32(static_cast<uint32_t>(f.num));
                break;
            case '8':
                w.u64(f.num);
                break;
            case 's':
                w.str(f.s);
                break;
            case 'q':
                w.qid(f.q);
                break;
        }
    }
    buf.resize(w.finish());
    return buf;
}

void expect_decodes(uint8_t type, const std::vector<Field>& fields) {
    SCOPED_TRACE(static_cast<int>(type));
    auto msg = encode(type, 42, fields);
    ASSERT_GE(msg.size(), kHeaderSize);
    auto h = parse_header(msg, 65536);
    ASSERT_TRUE(h.has_value());
    EXPECT_EQ(h->type, type);
    EXPECT_EQ(h->tag, 42);
    Reader r{std::span(msg).subspan(kHeaderSize)};
    for (const auto& f : fields) {
        switch (f.kind) {
            case '1':
                EXPECT_EQ(r.u8(), f.num);
                break;
            case '2':
                EXPECT_EQ(r.u16(), f.num);
                break;
            case '4':
                EXPECT_EQ(r.u32(), f.num);
                break;
            case '8':
                EXPECT_EQ(r.u64(), f.num);
                break;
            case 's':
                EXPECT_EQ(r.str(kMaxPathLen), f.s);
                break;
            case 'q':
                EXPECT_EQ(r.qid(), f.q);
                break;
        }
    }
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.remaining(), 0u);
    // Any truncation of the body is detected.
    for (size_t cut = kHeaderSize; cut < msg.size(); ++cut) {
        Reader t{std::span(msg).subspan(kHeaderSize, cut - kHeaderSize)};
        for (const auto& f : fields) {
            switch (f.kind) {
                case '1':
                    t.u8();
                    break;
                case '2':
                    t.u16();
                    break;
                case '4':
                    t.u32();
                    break;
                case '8':
                    t.u64();
                    break;
                case 's':
                    t.str(kMaxPathLen);
                    break;
                case 'q':
                    t.qid();
                    break;
            }
        }
        EXPECT_FALSE(t.ok()) << "cut at " << cut;
    }
}

TEST(P9Wire, MessageLayoutsRoundTrip) {
    Qid q{kQtSymlink, 3, 99};
    expect_decodes(kTversion, {{'4', 8192}, {'s', 0, "9P2000.L"}});
    expect_decodes(kTauth, {{'4', 1}, {'s', 0, "u"}, {'s', 0, ""}, {'4', 1000}});
    expect_decodes(kTattach, {{'4', 0}, {'4', kNoFid}, {'s', 0, "u"}, {'s', 0, "/"}, {'4', 0}});
    expect_decodes(kTflush, {{'2', 7}});
    expect_decodes(kTwalk, {{'4', 0}, {'4', 1}, {'2', 2}, {'s', 0, "a"}, {'s', 0, "b"}});
    expect_decodes(kTlopen, {{'4', 1}, {'4', kDotlRdwr}});
    expect_decodes(kTlcreate, {{'4', 1}, {'s', 0, "f"}, {'4', 0}, {'4', 0644}, {'4', 0}});
    expect_decodes(kTsymlink, {{'4', 1}, {'s', 0, "l"}, {'s', 0, "/t"}, {'4', 0}});
    expect_decodes(kTmknod, {{'4', 1}, {'s', 0, "n"}, {'4', 010644}, {'4', 0}, {'4', 0}, {'4', 0}});
    expect_decodes(kTrename, {{'4', 1}, {'4', 2}, {'s', 0, "x"}});
    expect_decodes(kTreadlink, {{'4', 1}});
    expect_decodes(kTgetattr, {{'4', 1}, {'8', kGetattrBasic}});
    expect_decodes(kTsetattr, {{'4', 1},
                               {'4', kSetattrMode},
                               {'4', 0600},
                               {'4', 0},
                               {'4', 0},
                               {'8', 0},
                               {'8', 1},
                               {'8', 2},
                               {'8', 3},
                               {'8', 4}});
    expect_decodes(kTxattrwalk, {{'4', 1}, {'4', 2}, {'s', 0, "user.a"}});
    expect_decodes(kTxattrcreate, {{'4', 1}, {'s', 0, "user.a"}, {'8', 5}, {'4', 0}});
    expect_decodes(kTreaddir, {{'4', 1}, {'8', 0}, {'4', 4096}});
    expect_decodes(kTfsync, {{'4', 1}, {'4', 0}});
    expect_decodes(kTlock,
                   {{'4', 1}, {'1', 1}, {'4', 0}, {'8', 0}, {'8', 0}, {'4', 1}, {'s', 0, "h"}});
    expect_decodes(kTgetlock, {{'4', 1}, {'1', 1}, {'8', 0}, {'8', 0}, {'4', 1}, {'s', 0, "h"}});
    expect_decodes(kTlink, {{'4', 1}, {'4', 2}, {'s', 0, "l"}});
    expect_decodes(kTmkdir, {{'4', 1}, {'s', 0, "d"}, {'4', 0755}, {'4', 0}});
    expect_decodes(kTrenameat, {{'4', 1}, {'s', 0, "a"}, {'4', 2}, {'s', 0, "b"}});
    expect_decodes(kTunlinkat, {{'4', 1}, {'s', 0, "a"}, {'4', kUnlinkRemoveDir}});
    expect_decodes(kTread, {{'4', 1}, {'8', 0}, {'4', 100}});
    expect_decodes(kTclunk, {{'4', 1}});
    expect_decodes(kTremove, {{'4', 1}});
    expect_decodes(kTstatfs, {{'4', 1}});
    // Replies with qids.
    expect_decodes(kRwalk, {{'2', 2}, {'q', 0, "", q}, {'q', 0, "", q}});
    expect_decodes(kRlopen, {{'q', 0, "", q}, {'4', 0}});
}

}  // namespace
}  // namespace kvmsandbox::p9
