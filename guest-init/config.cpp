#include "guest-init/config.h"

namespace kvmsandbox::guest_init {

namespace {

std::unexpected<std::string> bad(std::string msg) {
    return std::unexpected(std::move(msg));
}

std::optional<unsigned long long> parse_number(std::string_view s, unsigned base,
                                               unsigned long long max) {
    if (s.empty() || s.size() > 20) return std::nullopt;
    unsigned long long v = 0;
    for (char c : s) {
        unsigned d = static_cast<unsigned>(c - '0');
        if (c < '0' || d >= base) return std::nullopt;
        v = v * base + d;
        if (v > max) return std::nullopt;
    }
    return v;
}

bool has_nul(std::string_view s) {
    return s.find('\0') != std::string_view::npos;
}

// Splits on '\n' into exactly N parts.
std::optional<std::vector<std::string_view>> split_lines(std::string_view v, size_t n) {
    std::vector<std::string_view> parts;
    size_t pos = 0;
    for (;;) {
        size_t nl = v.find('\n', pos);
        if (nl == std::string_view::npos) {
            parts.push_back(v.substr(pos));
            break;
        }
        parts.push_back(v.substr(pos, nl - pos));
        pos = nl + 1;
    }
    if (parts.size() != n) return std::nullopt;
    return parts;
}

bool absolute_path(std::string_view p) {
    return !p.empty() && p[0] == '/' && !has_nul(p);
}

}  // namespace

std::optional<uint32_t> parse_id(std::string_view s) {
    auto v = parse_number(s, 10, 0xfffffffeULL);
    if (!v) return std::nullopt;
    return static_cast<uint32_t>(*v);
}

std::expected<ShareMount, std::string> parse_mount_record(std::string_view value) {
    auto parts = split_lines(value, 3);
    if (!parts) return bad("mount record is not TAG\\nPATH\\nro|rw");
    ShareMount m;
    m.tag = std::string((*parts)[0]);
    m.path = std::string((*parts)[1]);
    if (m.tag.empty() || has_nul(m.tag) || m.tag.find(',') != std::string::npos)
        return bad("mount record has a bad tag");
    if (!absolute_path(m.path)) return bad("mount path is not absolute: " + m.path);
    if ((*parts)[2] == "ro")
        m.read_only = true;
    else if ((*parts)[2] == "rw")
        m.read_only = false;
    else
        return bad("mount mode is neither ro nor rw: " + std::string((*parts)[2]));
    return m;
}

std::expected<SymlinkSpec, std::string> parse_symlink_record(std::string_view value) {
    auto parts = split_lines(value, 2);
    if (!parts) return bad("symlink record is not PATH\\nTARGET");
    SymlinkSpec s{std::string((*parts)[0]), std::string((*parts)[1])};
    if (!absolute_path(s.path) || s.path == "/") return bad("bad symlink path: " + s.path);
    if (s.target.empty() || has_nul(s.target)) return bad("bad symlink target for " + s.path);
    return s;
}

std::expected<BootRoot, std::string> parse_boot_root_record(std::string_view value) {
    auto parts = split_lines(value, 2);
    if (!parts) return bad("bootroot record is not DEVICE\\nFSTYPE");
    BootRoot b{std::string((*parts)[0]), std::string((*parts)[1])};
    if (!b.device.starts_with("/dev/") || b.device.find("..") != std::string::npos ||
        has_nul(b.device))
        return bad("bad boot device: " + b.device);
    if (b.fstype.empty() || b.fstype.size() > 32 || has_nul(b.fstype) ||
        b.fstype.find(',') != std::string::npos)
        return bad("bad boot file system type: " + b.fstype);
    return b;
}

std::expected<GuestConfig, std::string> config_from_records(
    const std::vector<guest::Record>& recs) {
    GuestConfig c;
    bool have_uid = false, have_gid = false;
    for (const auto& r : recs) {
        const std::string& k = r.key;
        const std::string& v = r.value;
        if (k == "argv") {
            // execve takes C strings: a NUL would silently cut the argument.
            if (has_nul(v)) return bad("argument holds a NUL byte");
            c.argv.push_back(v);
        } else if (k == "env") {
            if (has_nul(v) || v.find('=') == std::string::npos || v[0] == '=')
                return bad("bad environment entry");
            c.env.push_back(v);
        } else if (k == "cwd") {
            if (!absolute_path(v)) return bad("cwd is not an absolute path: " + v);
            c.cwd = v;
        } else if (k == "uid") {
            auto id = parse_id(v);
            if (!id) return bad("bad uid: " + v);
            c.uid = *id;
            have_uid = true;
        } else if (k == "gid") {
            auto id = parse_id(v);
            if (!id) return bad("bad gid: " + v);
            c.gid = *id;
            have_gid = true;
        } else if (k == "group") {
            auto id = parse_id(v);
            if (!id) return bad("bad group: " + v);
            c.groups.push_back(*id);
        } else if (k == "tty") {
            if (v != "0" && v != "1") return bad("bad tty value: " + v);
            c.tty = v == "1";
        } else if (k == "rows" || k == "cols") {
            auto n = parse_number(v, 10, 0xffff);
            if (!n) return bad(std::string("bad ").append(k).append(": ").append(v));
            // 0 means "unknown" on the host side: keep the classic default.
            if (*n != 0) (k == "rows" ? c.rows : c.cols) = static_cast<unsigned short>(*n);
        } else if (k == "hostname") {
            if (v.empty() || v.size() > 64 || has_nul(v)) return bad("bad hostname");
            c.hostname = v;
        } else if (k == "home") {
            if (!absolute_path(v)) return bad("home is not an absolute path: " + v);
            c.home = v;
        } else if (k == "umask") {
            auto n = parse_number(v, 8, 0777);
            if (!n) return bad("bad umask: " + v);
            c.umask = static_cast<mode_t>(*n);
        } else if (k == "module") {
            if (v.empty() || v.find('/') != std::string::npos || has_nul(v) || v == "." ||
                v == "..")
                return bad("bad module file name: " + v);
            c.modules.push_back(v);
        } else if (k == "symlink") {
            auto s = parse_symlink_record(v);
            if (!s) return std::unexpected(s.error());
            c.symlinks.push_back(std::move(*s));
        } else if (k == "mount") {
            auto m = parse_mount_record(v);
            if (!m) return std::unexpected(m.error());
            c.mounts.push_back(std::move(*m));
        } else if (k == "net") {
            auto n = parse_net_record(v);
            if (!n) return std::unexpected(n.error());
            c.net = *n;
        } else if (k == "bootroot") {
            auto b = parse_boot_root_record(v);
            if (!b) return std::unexpected(b.error());
            c.boot_root = std::move(*b);
        }
    }
    if (c.argv.empty() || c.argv[0].empty()) return bad("no command given (argv is empty)");
    if (!have_uid) return bad("config has no uid");
    if (!have_gid) return bad("config has no gid");
    return c;
}

std::expected<GuestConfig, std::string> parse_config(std::string_view text) {
    auto recs = guest::parse_records(text);
    if (!recs) return bad("malformed config records");
    return config_from_records(*recs);
}

bool cmdline_has_flag(std::string_view cmdline, std::string_view flag) {
    size_t pos = 0;
    while (pos < cmdline.size()) {
        size_t end = cmdline.find_first_of(" \t\n", pos);
        if (end == std::string_view::npos) end = cmdline.size();
        std::string_view word = cmdline.substr(pos, end - pos);
        if (word == flag) return true;
        // "flag=0" turns it off, any other value on.
        if (word.size() > flag.size() && word.starts_with(flag) && word[flag.size()] == '=')
            return word.substr(flag.size() + 1) != "0";
        pos = end + 1;
    }
    return false;
}

}  // namespace kvmsandbox::guest_init
