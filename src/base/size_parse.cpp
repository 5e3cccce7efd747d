#include "base/size_parse.h"

#include <charconv>
#include <limits>

namespace kvmsandbox {

Result<uint64_t> parse_size(std::string_view text, uint64_t bare_unit) {
    const std::string shown(text);
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end == text.data())
        return failf("invalid size '{}': expected a number with an optional K, M, G or T suffix",
                     shown);
    std::string_view suffix(end, static_cast<size_t>(text.data() + text.size() - end));
    if (!suffix.empty() && (suffix.back() == 'B' || suffix.back() == 'b') && suffix.size() > 1)
        suffix.remove_suffix(1);  // "512MB", "1GiB" read like "512M", "1Gi"
    if (suffix.size() == 2 && (suffix[1] == 'i' || suffix[1] == 'I')) suffix.remove_suffix(1);
    uint64_t unit = 0;
    if (suffix.empty())
        unit = bare_unit;
    else if (suffix.size() == 1) {
        switch (suffix[0]) {
            case 'k':
            case 'K':
                unit = 1ull << 10;
                break;
            case 'm':
            case 'M':
                unit = 1ull << 20;
                break;
            case 'g':
            case 'G':
                unit = 1ull << 30;
                break;
            case 't':
            case 'T':
                unit = 1ull << 40;
                break;
            default:
                break;
        }
    }
    if (unit == 0)
        return failf("invalid size '{}': unknown suffix '{}' (use K, M, G or T)", shown, suffix);
    if (value > std::numeric_limits<uint64_t>::max() / unit)
        return failf("invalid size '{}': too large", shown);
    return value * unit;
}

}  // namespace kvmsandbox
