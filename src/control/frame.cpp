#include "control/frame.h"

namespace kvmsandbox::control {

namespace {

uint32_t read_be32(const char* p) {
    auto b = [&](int i) { return static_cast<uint32_t>(static_cast<unsigned char>(p[i])); };
    return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

}  // namespace

Result<std::string> encode_frame(std::string_view payload) {
    if (payload.empty()) return fail("cannot send an empty message");
    if (payload.size() > kMaxFrame)
        return failf("message too large ({} bytes, at most {})", payload.size(), kMaxFrame);
    auto n = static_cast<uint32_t>(payload.size());
    std::string out;
    out.reserve(kFrameHeader + payload.size());
    out += static_cast<char>(n >> 24);
    out += static_cast<char>(n >> 16);
    out += static_cast<char>(n >> 8);
    out += static_cast<char>(n);
    out += payload;
    return out;
}

bool FrameDecoder::feed(std::string_view bytes) {
    if (bad()) return false;
    // Drop the consumed prefix before growing, so a long-lived connection
    // does not keep every frame it ever received.
    if (start_ > 0 && (start_ == buf_.size() || start_ >= buf_.size() / 2)) {
        buf_.erase(0, start_);
        start_ = 0;
    }
    buf_.append(bytes);
    check_header();
    return !bad();
}

void FrameDecoder::check_header() {
    if (bad() || buffered() < kFrameHeader) return;
    uint32_t len = read_be32(buf_.data() + start_);
    if (len == 0)
        error_ = "zero-length message";
    else if (len > max_frame_)
        error_ = fmt::format("message too large ({} bytes, at most {})", len, max_frame_);
    if (bad()) {
        buf_.clear();
        start_ = 0;
    }
}

std::optional<std::string> FrameDecoder::next() {
    if (bad() || buffered() < kFrameHeader) return std::nullopt;
    uint32_t len = read_be32(buf_.data() + start_);
    if (buffered() - kFrameHeader < len) return std::nullopt;
    std::string frame = buf_.substr(start_ + kFrameHeader, len);
    start_ += kFrameHeader + len;
    if (start_ == buf_.size()) {
        buf_.clear();
        start_ = 0;
    }
    // The following frame's header may already be here: judge it now so a
    // bad length is reported even if no more bytes ever arrive.
    check_header();
    return frame;
}

}  // namespace kvmsandbox::control
