#include "boot/cache_files.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <utility>
#include <vector>

#include <fmt/core.h>

namespace kvmsandbox {

std::string file_identity(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return path + " -\n";
    return fmt::format("{} {} {}.{:09} {}\n", path, static_cast<long long>(st.st_size),
                       static_cast<long long>(st.st_mtim.tv_sec), st.st_mtim.tv_nsec,
                       static_cast<unsigned long long>(st.st_ino));
}

uint64_t fnv1a64(std::string_view s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

bool make_private_dir(const std::string& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return false;
    return ::chmod(dir.c_str(), 0700) == 0;
}

void prune_cache(const std::string& dir, std::string_view suffix, size_t keep) {
    std::error_code ec;
    std::vector<std::pair<std::filesystem::file_time_type, std::filesystem::path>> files;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        const std::string name = e.path().filename().string();
        if (name.size() > suffix.size() && name.ends_with(suffix))
            files.emplace_back(e.last_write_time(ec), e.path());
    }
    if (files.size() <= keep) return;
    std::sort(files.begin(), files.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t i = keep; i < files.size(); ++i) std::filesystem::remove(files[i].second, ec);
}

}  // namespace kvmsandbox
