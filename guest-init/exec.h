// Starting CMD: PATH search, the mapping of exec failures to the container
// exit-code conventions (126/127), and the status lines of guest_protocol.h.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kvmsandbox::guest_init {

struct ExecFailure {
    int code;             // 125, 126 or 127
    std::string message;  // without "error CODE "
    bool operator==(const ExecFailure&) const = default;
};

// What an execve errno means for the caller. ENOENT is "not found" (127);
// everything else found something that cannot run (126).
ExecFailure map_exec_error(int err, std::string_view argv0);

// Used when CMD's environment has no PATH (glibc's confstr(_CS_PATH)).
inline constexpr const char* kDefaultPath = "/bin:/usr/bin";

// The value of NAME in an environment of "NAME=value" entries, or nullptr.
const std::string* env_value(const std::vector<std::string>& env, std::string_view name);

// Where execvpe would look for FILE, in order: FILE itself when it holds a
// '/', else each PATH entry joined with FILE (an empty entry is the current
// directory, as POSIX says).
std::vector<std::string> path_candidates(std::string_view file, std::string_view path);

// execve()s the first candidate that works, with execvpe's rules: EACCES is
// remembered and the search goes on, ENOENT/ENOTDIR/ESTALE/ENODEV/ETIMEDOUT
// go on, any other error stops. Unlike execvpe it never retries with /bin/sh
// on ENOEXEC. Returns (only on failure) the errno to report.
int exec_search(std::string_view file, std::string_view path, char* const argv[],
                char* const envp[]);

// Status lines (guest_protocol.h): "exit N" / "signal N" from a wait status,
// "error CODE message" with the message kept on one line.
std::string status_line_for_wait(int wstatus);
std::string error_status_line(int code, std::string_view message);

// argv/envp arrays for execve, pointing into strings that outlive them.
std::vector<char*> c_string_array(const std::vector<std::string>& v);

}  // namespace kvmsandbox::guest_init
