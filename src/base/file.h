// Whole-file reads for inputs the VMM loads once (kernel, initrd).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace kvmsandbox {

// Reads all of `path`. Fails if the file is larger than `max` bytes, so a
// wrong path (e.g. a block device or a huge file) cannot exhaust host memory.
Result<std::vector<uint8_t>> read_file(const std::string& path, size_t max);

// The first (at most) `max` bytes of the regular file `fd`, and its size: for
// formats whose headers say what to read next.
struct FileHead {
    std::vector<uint8_t> bytes;
    uint64_t file_size = 0;
};
Result<FileHead> read_head(int fd, size_t max);

}  // namespace kvmsandbox
