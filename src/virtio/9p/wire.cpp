#include "virtio/9p/wire.h"

#include <cerrno>
#include <cstring>

namespace kvmsandbox::p9 {

void store_le32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint32_t load_le32(const uint8_t* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

namespace {

template <typename T>
T load_le(const uint8_t* p) {
    T v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(p[i]) << (8 * i));
    return v;
}

template <typename T>
void store_le(uint8_t* p, T v) {
    for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

bool Reader::take(size_t n, const uint8_t** out) {
    if (error_ != 0) return false;
    if (n > remaining()) {
        // Truncated message: a field claims more bytes than were sent.
        error_ = EPROTO;
        return false;
    }
    *out = buf_.data() + pos_;
    pos_ += n;
    return true;
}

uint8_t Reader::u8() {
    const uint8_t* p;
    return take(1, &p) ? p[0] : 0;
}

uint16_t Reader::u16() {
    const uint8_t* p;
    return take(2, &p) ? load_le<uint16_t>(p) : 0;
}

uint32_t Reader::u32() {
    const uint8_t* p;
    return take(4, &p) ? load_le<uint32_t>(p) : 0;
}

uint64_t Reader::u64() {
    const uint8_t* p;
    return take(8, &p) ? load_le<uint64_t>(p) : 0;
}

Qid Reader::qid() {
    Qid q;
    q.type = u8();
    q.version = u32();
    q.path = u64();
    return ok() ? q : Qid{};
}

std::string_view Reader::str(size_t max_len) {
    uint16_t len = u16();
    if (!ok()) return {};
    if (len > max_len) {
        error_ = ENAMETOOLONG;
        return {};
    }
    const uint8_t* p;
    if (!take(len, &p)) return {};
    return {reinterpret_cast<const char*>(p), len};
}

std::span<const uint8_t> Reader::bytes(size_t n) {
    const uint8_t* p;
    if (!take(n, &p)) return {};
    return {p, n};
}

uint8_t* Writer::take(size_t n) {
    if (overflow_ || n > remaining()) {
        overflow_ = true;
        return nullptr;
    }
    uint8_t* p = buf_.data() + pos_;
    pos_ += n;
    return p;
}

void Writer::u8(uint8_t v) {
    if (uint8_t* p = take(1)) p[0] = v;
}

void Writer::u16(uint16_t v) {
    if (uint8_t* p = take(2)) store_le(p, v);
}

void Writer::u32(uint32_t v) {
    if (uint8_t* p = take(4)) store_le(p, v);
}

void Writer::u64(uint64_t v) {
    if (uint8_t* p = take(8)) store_le(p, v);
}

void Writer::qid(const Qid& q) {
    u8(q.type);
    u32(q.version);
    u64(q.path);
}

void Writer::str(std::string_view s) {
    if (s.size() > 0xFFFF) {
        overflow_ = true;
        return;
    }
    u16(static_cast<uint16_t>(s.size()));
    if (uint8_t* p = take(s.size()); p && !s.empty()) std::memcpy(p, s.data(), s.size());
}

void Writer::bytes(std::span<const uint8_t> b) {
    if (uint8_t* p = take(b.size()); p && !b.empty()) std::memcpy(p, b.data(), b.size());
}

std::span<uint8_t> Writer::reserve(size_t n) {
    uint8_t* p = take(n);
    if (!p) return {};
    return {p, n};
}

void Writer::begin(uint8_t type, uint16_t tag) {
    pos_ = 0;
    overflow_ = false;
    u32(0);
    u8(type);
    u16(tag);
}

size_t Writer::finish() {
    if (overflow_ || pos_ < kHeaderSize || pos_ > 0xFFFFFFFFu) return 0;
    store_le32(buf_.data(), static_cast<uint32_t>(pos_));
    return pos_;
}

ErrnoResult<Header> parse_header(std::span<const uint8_t> head, size_t total, size_t msize) {
    if (total < kHeaderSize || head.size() < kHeaderSize) return std::unexpected(EPROTO);
    Reader r(head);
    Header h;
    h.size = r.u32();
    h.type = r.u8();
    h.tag = r.u16();
    // The transport already tells how many bytes arrived; a size field that
    // disagrees is a framing lie (truncated or padded), never trusted.
    if (h.size != total || h.size < kHeaderSize) return std::unexpected(EPROTO);
    if (h.size > msize) return std::unexpected(EMSGSIZE);
    return h;
}

}  // namespace kvmsandbox::p9
