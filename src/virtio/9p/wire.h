// 9P2000.L wire format: little-endian integers, strings as len[2] + bytes,
// qids as type[1] version[4] path[8], every message framed as
// size[4] type[1] tag[2] body.
//
// Every byte read here comes from the guest and is hostile (docs/architecture.md §5):
// the Reader never reads past its span, caps string lengths and, instead of
// throwing, latches an errno that the server turns into Rlerror. The Writer
// never writes past its caller-provided buffer and latches an overflow flag.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <span>
#include <string_view>

namespace kvmsandbox::p9 {

// Protocol-level failures are errnos because every one of them becomes an
// Rlerror(errno) on the wire; a text message would have nowhere to go.
template <typename T = void>
using ErrnoResult = std::expected<T, int>;

// Message type numbers (T-message; the R-message is T + 1).
enum MsgType : uint8_t {
    kTlerror = 6,
    kRlerror = 7,
    kTstatfs = 8,
    kRstatfs = 9,
    kTlopen = 12,
    kRlopen = 13,
    kTlcreate = 14,
    kRlcreate = 15,
    kTsymlink = 16,
    kRsymlink = 17,
    kTmknod = 18,
    kRmknod = 19,
    kTrename = 20,
    kRrename = 21,
    kTreadlink = 22,
    kRreadlink = 23,
    kTgetattr = 24,
    kRgetattr = 25,
    kTsetattr = 26,
    kRsetattr = 27,
    kTxattrwalk = 30,
    kRxattrwalk = 31,
    kTxattrcreate = 32,
    kRxattrcreate = 33,
    kTreaddir = 40,
    kRreaddir = 41,
    kTfsync = 50,
    kRfsync = 51,
    kTlock = 52,
    kRlock = 53,
    kTgetlock = 54,
    kRgetlock = 55,
    kTlink = 70,
    kRlink = 71,
    kTmkdir = 72,
    kRmkdir = 73,
    kTrenameat = 74,
    kRrenameat = 75,
    kTunlinkat = 76,
    kRunlinkat = 77,
    kTversion = 100,
    kRversion = 101,
    kTauth = 102,
    kRauth = 103,
    kTattach = 104,
    kRattach = 105,
    kTflush = 108,
    kRflush = 109,
    kTwalk = 110,
    kRwalk = 111,
    kTread = 116,
    kRread = 117,
    kTwrite = 118,
    kRwrite = 119,
    kTclunk = 120,
    kRclunk = 121,
    kTremove = 122,
    kRremove = 123,
};

inline constexpr uint32_t kNoFid = 0xFFFFFFFFu;
inline constexpr uint16_t kNoTag = 0xFFFFu;
inline constexpr size_t kHeaderSize = 7;         // size[4] type[1] tag[2]
inline constexpr size_t kQidSize = 13;           // type[1] version[4] path[8]
inline constexpr size_t kReadHeaderSize = 11;    // Rread: header + count[4]
inline constexpr size_t kWriteHeaderSize = 23;   // Twrite: header + fid[4] offset[8] count[4]
inline constexpr size_t kMaxWalkNames = 16;      // P9_MAXWELEM, what the Linux client uses
inline constexpr size_t kMaxNameLen = 255;       // one path component (NAME_MAX)
inline constexpr size_t kMaxPathLen = 4096;      // symlink targets, xattr names (PATH_MAX)
inline constexpr size_t kMaxXattrNameLen = 255;  // XATTR_NAME_MAX
inline constexpr size_t kMaxXattrSize = 65536;   // XATTR_SIZE_MAX

// Qid type bits.
inline constexpr uint8_t kQtDir = 0x80;
inline constexpr uint8_t kQtSymlink = 0x02;
inline constexpr uint8_t kQtFile = 0x00;

// Tgetattr request_mask / Rgetattr valid bits.
inline constexpr uint64_t kGetattrMode = 1ull << 0;
inline constexpr uint64_t kGetattrNlink = 1ull << 1;
inline constexpr uint64_t kGetattrUid = 1ull << 2;
inline constexpr uint64_t kGetattrGid = 1ull << 3;
inline constexpr uint64_t kGetattrRdev = 1ull << 4;
inline constexpr uint64_t kGetattrAtime = 1ull << 5;
inline constexpr uint64_t kGetattrMtime = 1ull << 6;
inline constexpr uint64_t kGetattrCtime = 1ull << 7;
inline constexpr uint64_t kGetattrIno = 1ull << 8;
inline constexpr uint64_t kGetattrSize = 1ull << 9;
inline constexpr uint64_t kGetattrBlocks = 1ull << 10;
inline constexpr uint64_t kGetattrBasic = 0x7FF;  // all of the above

// Tsetattr valid bits.
inline constexpr uint32_t kSetattrMode = 1u << 0;
inline constexpr uint32_t kSetattrUid = 1u << 1;
inline constexpr uint32_t kSetattrGid = 1u << 2;
inline constexpr uint32_t kSetattrSize = 1u << 3;
inline constexpr uint32_t kSetattrAtime = 1u << 4;
inline constexpr uint32_t kSetattrMtime = 1u << 5;
inline constexpr uint32_t kSetattrCtime = 1u << 6;
inline constexpr uint32_t kSetattrAtimeSet = 1u << 7;
inline constexpr uint32_t kSetattrMtimeSet = 1u << 8;

// Tlopen/Tlcreate flags (P9_DOTL_*). They are defined by the protocol, not by
// the host's <fcntl.h>; the server maps them explicitly.
inline constexpr uint32_t kDotlAccMode = 03;
inline constexpr uint32_t kDotlWronly = 01;
inline constexpr uint32_t kDotlRdwr = 02;
inline constexpr uint32_t kDotlCreate = 0100;
inline constexpr uint32_t kDotlExcl = 0200;
inline constexpr uint32_t kDotlNoctty = 0400;
inline constexpr uint32_t kDotlTrunc = 01000;
inline constexpr uint32_t kDotlAppend = 02000;
inline constexpr uint32_t kDotlNonblock = 04000;
inline constexpr uint32_t kDotlDsync = 010000;
inline constexpr uint32_t kDotlFasync = 020000;
inline constexpr uint32_t kDotlDirect = 040000;
inline constexpr uint32_t kDotlLargefile = 0100000;
inline constexpr uint32_t kDotlDirectory = 0200000;
inline constexpr uint32_t kDotlNofollow = 0400000;
inline constexpr uint32_t kDotlNoatime = 01000000;
inline constexpr uint32_t kDotlCloexec = 02000000;
inline constexpr uint32_t kDotlSync = 04000000;

// Tlock / Tgetlock.
inline constexpr uint8_t kLockTypeRdlck = 0;
inline constexpr uint8_t kLockTypeWrlck = 1;
inline constexpr uint8_t kLockTypeUnlck = 2;
inline constexpr uint8_t kLockSuccess = 0;
inline constexpr uint8_t kLockBlocked = 1;
inline constexpr uint8_t kLockError = 2;
inline constexpr uint32_t kLockFlagsBlock = 1;

// Tunlinkat flags: the protocol reuses Linux's AT_REMOVEDIR value.
inline constexpr uint32_t kUnlinkRemoveDir = 0x200;

struct Qid {
    uint8_t type = 0;
    uint32_t version = 0;
    uint64_t path = 0;
    friend bool operator==(const Qid&, const Qid&) = default;
};

// Bounds-checked little-endian reader. After the first failure every further
// read returns zero/empty and error() keeps the first errno, so a handler can
// decode all fields and check once at the end.
class Reader {
  public:
    explicit Reader(std::span<const uint8_t> buf) : buf_(buf) {}

    uint8_t u8();
    uint16_t u16();
    uint32_t u32();
    uint64_t u64();
    Qid qid();
    // A len[2]-prefixed string, at most max_len bytes (longer: ENAMETOOLONG).
    // The view points into the reader's buffer.
    std::string_view str(size_t max_len);
    // n raw bytes (fewer left: EPROTO).
    std::span<const uint8_t> bytes(size_t n);

    bool ok() const { return error_ == 0; }
    int error() const { return error_; }
    void fail(int err) {
        if (error_ == 0) error_ = err;
    }
    size_t offset() const { return pos_; }
    size_t remaining() const { return buf_.size() - pos_; }

  private:
    bool take(size_t n, const uint8_t** out);

    std::span<const uint8_t> buf_;
    size_t pos_ = 0;
    int error_ = 0;
};

// Writer into a caller buffer; never writes past it. overflowed() tells that
// something did not fit (the message must not be sent).
class Writer {
  public:
    explicit Writer(std::span<uint8_t> buf) : buf_(buf) {}

    void u8(uint8_t v);
    void u16(uint16_t v);
    void u32(uint32_t v);
    void u64(uint64_t v);
    void qid(const Qid& q);
    // Strings longer than 65535 bytes cannot be encoded: overflow.
    void str(std::string_view s);
    void bytes(std::span<const uint8_t> b);
    // Reserves n bytes to be filled later (e.g. a count known only at the end);
    // empty span on overflow.
    std::span<uint8_t> reserve(size_t n);

    // Starts a message: size placeholder, type, tag. finish() patches size and
    // returns the total length, 0 if anything overflowed.
    void begin(uint8_t type, uint16_t tag);
    size_t finish();

    bool overflowed() const { return overflow_; }
    size_t size() const { return pos_; }
    size_t capacity() const { return buf_.size(); }
    size_t remaining() const { return buf_.size() - pos_; }

  private:
    uint8_t* take(size_t n);

    std::span<uint8_t> buf_;
    size_t pos_ = 0;
    bool overflow_ = false;
};

struct Header {
    uint32_t size = 0;
    uint8_t type = 0;
    uint16_t tag = 0;
};

// Parses size[4] type[1] tag[2] of a message of exactly `total` bytes whose
// first bytes are `head` (at least 7 of them for success). The size field must
// equal total, be >= 7 and <= msize; a violation is EPROTO (truncated or
// inconsistent framing) or EMSGSIZE (bigger than negotiated).
ErrnoResult<Header> parse_header(std::span<const uint8_t> head, size_t total, size_t msize);

// Convenience for a contiguous message.
inline ErrnoResult<Header> parse_header(std::span<const uint8_t> msg, size_t msize) {
    return parse_header(msg, msg.size(), msize);
}

// Little-endian stores/loads for fixed positions (patching counts).
void store_le32(uint8_t* p, uint32_t v);
uint32_t load_le32(const uint8_t* p);

}  // namespace kvmsandbox::p9
