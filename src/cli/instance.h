// What the CLI commands share about instances: sending one request to a
// running one, and whether one is alive. (A new VM claims its name in app/.)
#pragma once

#include <chrono>
#include <string>

#include "base/result.h"
#include "control/instance_dir.h"
#include "control/json.h"

namespace kvmsandbox::cli {

// Control commands that fail (unknown instance, refused request) exit 1.
inline constexpr int kExitControlError = 1;

// Sends `cmd` with `args` to instance `name`; an ok:false reply becomes an
// error carrying the instance's message.
Result<control::Json> call_instance(const std::string& name, const std::string& cmd,
                                    const control::Json& args = control::Json(),
                                    std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Whether instance `name` still has a live socket.
bool instance_alive(const std::string& name);

}  // namespace kvmsandbox::cli
