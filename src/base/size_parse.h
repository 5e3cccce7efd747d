// Parsing of user-given sizes such as "512M", "2G", "65536K" or a bare number
// of MiB (the lkvm convention).
#pragma once

#include <cstdint>
#include <string_view>

#include "base/result.h"

namespace kvmsandbox {

Result<uint64_t> parse_size(std::string_view text, uint64_t bare_unit = uint64_t{1} << 20);

}  // namespace kvmsandbox
