#include "cli/format.h"

#include <fmt/core.h>

namespace kvmsandbox::cli {

std::string format_bytes(uint64_t b) {
    constexpr uint64_t K = 1024, M = K * K, G = M * K;
    auto one = [](uint64_t v, uint64_t unit, char suffix) {
        if (v % unit == 0) return fmt::format("{}{}", v / unit, suffix);
        return fmt::format("{:.1f}{}", static_cast<double>(v) / static_cast<double>(unit), suffix);
    };
    if (b >= G) return one(b, G, 'G');
    if (b >= M) return one(b, M, 'M');
    if (b >= K) return one(b, K, 'K');
    return fmt::format("{}B", b);
}

std::string format_duration(double s) {
    if (s < 0) s = 0;
    const auto t = static_cast<uint64_t>(s);
    if (t < 60) return fmt::format("{}s", t);
    if (t < 3600) return fmt::format("{}m{:02}s", t / 60, t % 60);
    if (t < 86400) return fmt::format("{}h{:02}m", t / 3600, t % 3600 / 60);
    return fmt::format("{}d{:02}h", t / 86400, t % 86400 / 3600);
}

}  // namespace kvmsandbox::cli
