// Errors are values inside the VMM: every fallible call returns Result<T>;
// only the CLI edge turns an Error into a message and an exit code.
#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <utility>

#include <fmt/core.h>

namespace kvmsandbox {

struct Error {
    std::string message;
    // Exit code the CLI should use when this error ends the run (125: our own failure).
    int exit_code = 125;
};

template <typename T = void>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(std::string message, int exit_code = 125) {
    return std::unexpected(Error{std::move(message), exit_code});
}

template <typename... Args>
std::unexpected<Error> failf(fmt::format_string<Args...> f, Args&&... args) {
    return std::unexpected(Error{fmt::format(f, std::forward<Args>(args)...), 125});
}

// "what: strerror(errno)" for a failed system call; reads errno at the call.
inline std::unexpected<Error> fail_errno(const std::string& what) {
    int e = errno;
    return std::unexpected(Error{fmt::format("{}: {}", what, std::strerror(e)), 125});
}

}  // namespace kvmsandbox

// The one way an error travels up: KS_TRY(expr) returns a failed Result's
// error from the enclosing function (which returns any Result<T>), and
// KS_TRY_ASSIGN(decl, expr) declares `decl` from a Result's value or returns
// its error. Macros, because only a macro can return from its caller.
// KS_TRY_ASSIGN is two statements: give it braces under an if or a loop.
#define KS_CONCAT_INNER(a, b) a##b
#define KS_CONCAT(a, b) KS_CONCAT_INNER(a, b)
#define KS_TRY(expr)                                                       \
    do {                                                                   \
        if (auto ks_try_result_ = (expr); !ks_try_result_)                 \
            return ::std::unexpected(::std::move(ks_try_result_).error()); \
    } while (0)
#define KS_TRY_ASSIGN(decl, expr) KS_TRY_ASSIGN_IMPL(decl, expr, KS_CONCAT(ks_try_, __LINE__))
#define KS_TRY_ASSIGN_IMPL(decl, expr, tmp)                       \
    auto tmp = (expr);                                            \
    if (!tmp) return ::std::unexpected(::std::move(tmp).error()); \
    decl = ::std::move(*tmp)
