#include "protocol/guest_config.h"

#include <algorithm>
#include <array>
#include <string_view>

#include "protocol/guest_protocol.h"

namespace kvmsandbox {

bool is_host_only_variable(const std::string& name) {
    // They point at sockets, displays or per-session directories of the host
    // that the guest cannot reach; leaving them set only produces confusing
    // connection errors inside.
    static constexpr std::array<std::string_view, 14> names = {
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "XAUTHORITY",
        "SSH_AUTH_SOCK",
        "SSH_AGENT_PID",
        "SSH_CONNECTION",
        "SSH_CLIENT",
        "SSH_TTY",
        "GPG_AGENT_INFO",
        "DBUS_SESSION_BUS_ADDRESS",
        "XDG_RUNTIME_DIR",
        "XDG_SESSION_ID",
        "TMUX",
        "TMUX_PANE",
    };
    return std::find(names.begin(), names.end(), name) != names.end();
}

std::vector<std::string> filter_environment(const std::vector<std::string>& env) {
    std::vector<std::string> out;
    for (const auto& kv : env) {
        auto eq = kv.find('=');
        if (eq == std::string::npos || eq == 0) continue;
        if (is_host_only_variable(kv.substr(0, eq))) continue;
        out.push_back(kv);
    }
    return out;
}

std::string encode_guest_config(const GuestRunSpec& spec) {
    using guest::append_record;
    std::string out;
    for (const auto& a : spec.argv) append_record(out, "argv", a);
    for (const auto& e : spec.env) append_record(out, "env", e);
    append_record(out, "cwd", spec.cwd);
    append_record(out, "uid", std::to_string(spec.uid));
    append_record(out, "gid", std::to_string(spec.gid));
    for (gid_t g : spec.groups) append_record(out, "group", std::to_string(g));
    append_record(out, "tty", spec.tty ? "1" : "0");
    if (spec.tty) {
        append_record(out, "rows", std::to_string(spec.rows));
        append_record(out, "cols", std::to_string(spec.cols));
    }
    append_record(out, "hostname", spec.hostname);
    if (!spec.home.empty()) append_record(out, "home", spec.home);
    for (const auto& m : spec.modules) append_record(out, "module", m);
    for (const auto& l : spec.shares.symlinks)
        append_record(out, "symlink", l.path + "\n" + l.target);
    for (const auto& s : spec.shares.shares)
        append_record(out, "mount",
                      s.tag + "\n" + s.guest_path + "\n" + (s.read_only ? "ro" : "rw"));
    if (spec.net)
        append_record(out, "net",
                      spec.net->address_cidr + "\n" + spec.net->gateway + "\n" + spec.net->dns);
    if (spec.boot_root)
        append_record(out, "bootroot", spec.boot_root->device + "\n" + spec.boot_root->fstype);
    return out;
}

}  // namespace kvmsandbox
