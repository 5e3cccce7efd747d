// Process-wide pieces of the VMM process: its resident memory, and turning
// signals into an fd the event loop watches.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kvmsandbox {

// Resident memory of this process (from /proc/self/statm); 0 if unknown.
uint64_t process_rss_bytes();

// Blocks `signals` in the calling thread (threads it creates later inherit
// the mask, so only the fd sees them) and returns a non-blocking signalfd
// for them. SIGPIPE is ignored too: a closed reader is an error value.
Result<UniqueFd> signals_to_fd(std::initializer_list<int> signals);

}  // namespace kvmsandbox
