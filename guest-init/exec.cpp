#include "guest-init/exec.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kvmsandbox::guest_init {

ExecFailure map_exec_error(int err, std::string_view argv0) {
    std::string name(argv0);
    if (err == ENOENT) {
        // A name with a slash was not searched: say what a shell says.
        if (name.find('/') != std::string::npos) return {127, name + ": No such file or directory"};
        return {127, name + ": command not found"};
    }
    return {126, name + ": " + strerror(err)};
}

const std::string* env_value(const std::vector<std::string>& env, std::string_view name) {
    // The last definition wins, as with getenv on an environment built by
    // appending.
    const std::string* found = nullptr;
    for (const auto& e : env) {
        if (e.size() > name.size() && e.compare(0, name.size(), name) == 0 && e[name.size()] == '=')
            found = &e;
    }
    return found;
}

std::vector<std::string> path_candidates(std::string_view file, std::string_view path) {
    if (file.find('/') != std::string_view::npos) return {std::string(file)};
    std::vector<std::string> out;
    size_t pos = 0;
    for (;;) {
        size_t colon = path.find(':', pos);
        std::string_view dir =
            path.substr(pos, colon == std::string_view::npos ? colon : colon - pos);
        std::string cand;
        if (dir.empty()) {
            cand = std::string(file);
        } else {
            cand = std::string(dir);
            if (cand.back() != '/') cand.push_back('/');
            cand += file;
        }
        out.push_back(std::move(cand));
        if (colon == std::string_view::npos) break;
        pos = colon + 1;
    }
    return out;
}

int exec_search(std::string_view file, std::string_view path, char* const argv[],
                char* const envp[]) {
    if (file.empty()) return ENOENT;
    bool saw_eacces = false;
    int last = ENOENT;
    for (const auto& cand : path_candidates(file, path)) {
        ::execve(cand.c_str(), argv, envp);
        int err = errno;
        switch (err) {
            case EACCES:
                saw_eacces = true;
                [[fallthrough]];
            case ENOENT:
            case ENOTDIR:
            case ESTALE:
            case ENODEV:
            case ETIMEDOUT:
                last = err;
                continue;
            default:
                return err;
        }
    }
    return saw_eacces ? EACCES : last;
}

std::string status_line_for_wait(int wstatus) {
    if (WIFSIGNALED(wstatus)) return "signal " + std::to_string(WTERMSIG(wstatus)) + "\n";
    return "exit " + std::to_string(WEXITSTATUS(wstatus)) + "\n";
}

std::string error_status_line(int code, std::string_view message) {
    std::string out = "error " + std::to_string(code) + " ";
    for (char c : message) {
        // The status is one text line: argv0 or a path may hold anything.
        unsigned char u = static_cast<unsigned char>(c);
        out.push_back(u < 0x20 || u == 0x7f ? '?' : c);
    }
    out.push_back('\n');
    return out;
}

std::vector<char*> c_string_array(const std::vector<std::string>& v) {
    std::vector<char*> out;
    out.reserve(v.size() + 1);
    for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
    out.push_back(nullptr);
    return out;
}

}  // namespace kvmsandbox::guest_init
