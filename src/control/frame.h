// Message framing on a stream socket: a 4-byte big-endian payload length,
// then the payload. Lengths of zero or above kMaxFrame are protocol errors
// that end the stream: there is no way to resynchronise after one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace kvmsandbox::control {

inline constexpr size_t kFrameHeader = 4;
inline constexpr size_t kMaxFrame = 1024 * 1024;

// Header + payload. Fails for an empty payload or one above kMaxFrame.
Result<std::string> encode_frame(std::string_view payload);

// Incremental decoder for bytes read from a nonblocking socket: feed() what
// arrived, then take frames with next() until it returns nullopt. Buffers at
// most one incomplete frame beyond what was fed and not yet taken.
class FrameDecoder {
  public:
    explicit FrameDecoder(size_t max_frame = kMaxFrame) : max_frame_(max_frame) {}

    // Appends bytes. Returns false once the stream is bad (bytes fed after
    // that are dropped).
    bool feed(std::string_view bytes);
    // The next complete frame's payload, or nullopt (need more bytes, or bad).
    std::optional<std::string> next();

    // A declared length was zero or above the maximum; error() says which.
    bool bad() const { return !error_.empty(); }
    const std::string& error() const { return error_; }
    // Bytes held and not yet returned by next().
    size_t buffered() const { return buf_.size() - start_; }
    // True when EOF now would cut a frame short.
    bool mid_frame() const { return buffered() > 0; }

  private:
    // Checks the header of the frame at start_, if complete; marks bad.
    void check_header();

    size_t max_frame_;
    std::string buf_;
    size_t start_ = 0;  // consumed prefix of buf_, dropped lazily
    std::string error_;
};

}  // namespace kvmsandbox::control
