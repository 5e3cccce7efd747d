// The control protocol, one JSON object per frame (control/frame.h):
//   request:  {"v":1,"cmd":"<name>", ...arguments}
//   response: {"v":1,"ok":true, ...results} or {"v":1,"ok":false,"error":"one line"}
// A peer speaking another version gets an error response, never a guess.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "control/json.h"

namespace kvmsandbox::control {

inline constexpr int64_t kProtocolVersion = 1;

// {"v":1,"cmd":cmd} plus the members of `args` (an object or null). "v" and
// "cmd" in args are ignored.
Json make_request(std::string_view cmd, const Json& args = Json());
// {"v":1,"ok":true} plus the members of `fields` (an object or null).
Json ok_response(const Json& fields = Json());
// {"v":1,"ok":false,"error":message}, the message folded to one line and
// cut to a sane length.
Json error_response(std::string_view message);

// Checks the shape and version of a request; returns its command name. The
// error message is meant to go back as error_response(message), e.g.
// "protocol version 2 not supported".
Result<std::string> validate_request(const Json& request);
// Checks the shape and version of a response (either outcome).
Result<void> validate_response(const Json& response);
// The response itself when it says ok, else an Error carrying its message
// (exit code 1: the command failed, not the tool).
Result<Json> response_result(Json response);

}  // namespace kvmsandbox::control
