// fuzz_control: decoding of control messages as a control socket peer sends
// them: frames (control/frame.h) out of a byte stream, each payload through
// parse_json() with the server's limits, then validate_request() and the
// client's validate_response()/response_result() (control/protocol.h).
//
// Input layout:
//   [0]   bit 0: the rest is one payload, no framing (reaches the JSON parser
//         directly); else it is a byte stream of frames. Bits 1-7: the chunk
//         size the stream is fed to FrameDecoder in (0: all at once)
//   [1..] the payload or the stream
//
// Checks: no crash, no unbounded memory (the decoder buffers at most what was
// fed); a frame is never empty nor above kMaxFrame; every value parse_json()
// accepts dumps to text that parses again to the same value and dumps to
// the same text (types included: 1 and 1.0 differ), holds only int64
// integers, and its replies (error_response(), ok_response()) dump to
// parseable, valid responses.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "control/frame.h"
#include "control/json.h"
#include "control/protocol.h"
#include "fuzz_check.h"

namespace {

using namespace kvmsandbox;
using namespace kvmsandbox::control;

bool only_signed_integers(const Json& v) {
    if (v.is_number_unsigned()) return false;
    if (!v.is_structured()) return true;
    return std::all_of(v.begin(), v.end(), only_signed_integers);
}

// Parses a dump the way a peer would and checks it is valid and a response.
void check_response(const Json& response) {
    std::string text = dump_json(response);
    auto back = parse_json(text, kMaxFrame);
    FUZZ_CHECK(back);
    FUZZ_CHECK(dump_json(*back) == text);
    FUZZ_CHECK(validate_response(*back));
}

void decode(std::string_view payload) {
    auto v = parse_json(payload, kMaxFrame);
    if (!v) {
        FUZZ_CHECK(!v.error().message.empty());
        check_response(error_response("invalid request: " + v.error().message));
        return;
    }
    FUZZ_CHECK(only_signed_integers(*v));
    std::string text = dump_json(*v);
    auto again = parse_json(text, kMaxFrame);
    FUZZ_CHECK(again);
    FUZZ_CHECK(*again == *v);
    FUZZ_CHECK(dump_json(*again) == text);

    // The server's side: what it answers, echoing what it got.
    if (auto cmd = validate_request(*v)) {
        FUZZ_CHECK(!cmd->empty());
        check_response(ok_response(*v));
        check_response(error_response("unknown request '" + *cmd + "'"));
    } else {
        check_response(error_response(cmd.error().message));
    }
    // The client's side: the same bytes taken as a reply.
    if (validate_response(*v)) {
        auto r = response_result(*v);
        FUZZ_CHECK(r.has_value() == get_bool(*v, "ok").value_or(false));
        if (!r) FUZZ_CHECK(r.error().exit_code == 1);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const uint8_t flags = data[0];
    std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    if (flags & 1) {
        decode(rest);
        return 0;
    }
    const size_t chunk = (flags >> 1) ? (flags >> 1) : std::max<size_t>(rest.size(), 1);
    FrameDecoder decoder;
    for (size_t off = 0; off < rest.size() && !decoder.bad(); off += chunk) {
        decoder.feed(rest.substr(off, chunk));
        FUZZ_CHECK(decoder.buffered() <= rest.size());
        while (auto frame = decoder.next()) {
            FUZZ_CHECK(!frame->empty() && frame->size() <= kMaxFrame);
            decode(*frame);
        }
    }
    if (decoder.bad()) FUZZ_CHECK(!decoder.error().empty() && decoder.buffered() == 0);
    return 0;
}
