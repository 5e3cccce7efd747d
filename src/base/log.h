// Diagnostics of the VMM itself go to stderr, prefixed, so they never mix with
// the guest's console stream on stdout.
#pragma once

#include <cstdio>

#include <fmt/core.h>

namespace kvmsandbox::log {

inline bool& verbose_flag() {
    static bool v = false;
    return v;
}

template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
    fmt::print(stderr, "kvmsandbox: {}\n", fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
    if (verbose_flag())
        fmt::print(stderr, "kvmsandbox: {}\n", fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace kvmsandbox::log
