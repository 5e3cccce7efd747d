// How the control commands print sizes and durations.
#pragma once

#include <cstdint>
#include <string>

namespace kvmsandbox::cli {

// 1536 MiB -> "1.5G", 64 MiB -> "64M", 3000 -> "2.9K".
std::string format_bytes(uint64_t bytes);
// 75.2 -> "1m15s", 3700 -> "1h01m", 2.3 -> "2s".
std::string format_duration(double seconds);

}  // namespace kvmsandbox::cli
