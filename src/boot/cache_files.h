// Helpers for the files kvmsandbox keeps across runs (~/.cache/kvmsandbox):
// how a cache entry notices that its inputs changed, and how old entries go.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvmsandbox {

// "path size mtime-ns inode\n", or "path -\n" when it does not exist: enough
// to notice a reinstall or an edit without reading the file.
std::string file_identity(const std::string& path);

// FNV-1a, 64 bits: names cache files after their key.
uint64_t fnv1a64(std::string_view s);

// Creates `dir` (and its parents) if needed and makes it 0700: the cache
// holds what this user's VMs boot. False if it cannot be had.
bool make_private_dir(const std::string& dir);

// Deletes all but the `keep` most recently written files in `dir` whose
// names end in `suffix` (e.g. ".img"): each kernel or kvmsandbox update
// leaves an entry behind.
void prune_cache(const std::string& dir, std::string_view suffix, size_t keep);

}  // namespace kvmsandbox
