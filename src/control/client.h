// One request/response exchange with an instance's control socket, for the
// CLI side (list/stop/pause...). Blocking, with one deadline for the whole
// exchange, so a hung instance cannot hang the command.
#pragma once

#include <chrono>
#include <string>

#include "base/result.h"
#include "control/json.h"

namespace kvmsandbox::control {

class ControlClient {
  public:
    // Connects to socket_path, sends `request` as one frame and returns the
    // one-frame response once validate_response() accepts it, whether it says
    // ok or not (see response_result()). Errors name the instance (the socket
    // file's name without ".sock"): "no instance named X" when there is no
    // socket or nobody listens on it, "instance X is not responding" when the
    // deadline passes.
    static Result<Json> request(const std::string& socket_path, const Json& request,
                                std::chrono::milliseconds timeout);
};

}  // namespace kvmsandbox::control
