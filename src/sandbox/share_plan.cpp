#include "sandbox/share_plan.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <fmt/core.h>

namespace kvmsandbox {

namespace fs = std::filesystem;

const std::vector<std::string>& system_dirs() {
    static const std::vector<std::string> dirs = {"/usr",   "/bin",   "/sbin",   "/lib",
                                                  "/lib32", "/lib64", "/libx32", "/etc"};
    return dirs;
}

const std::vector<std::string>& etc_secrets() {
    // Password hashes, private host keys and private TLS keys: nothing a
    // build needs, everything an attacker wants.
    static const std::vector<std::string> secrets = {
        "shadow",
        "shadow-",
        "gshadow",
        "gshadow-",
        "ssh/ssh_host_rsa_key",
        "ssh/ssh_host_ecdsa_key",
        "ssh/ssh_host_ed25519_key",
        "ssh/ssh_host_dsa_key",
        "ssl/private",
        "sudoers",
        "sudoers.d",
        "security/opasswd",
    };
    return secrets;
}

namespace {

std::string normalize(const std::string& p) {
    auto n = fs::path(p).lexically_normal().string();
    if (n.size() > 1 && n.back() == '/') n.pop_back();
    return n;
}

bool is_dir(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Whether `inner` is `outer` or below it (both normalized, absolute).
bool within(const std::string& inner, const std::string& outer) {
    if (outer == "/") return true;
    return inner == outer ||
           (inner.size() > outer.size() && inner.compare(0, outer.size(), outer) == 0 &&
            inner[outer.size()] == '/');
}

std::string join(const std::string& root, const std::string& abs) {
    return root == "/" ? abs : normalize(root + abs);
}

}  // namespace

Result<Share> parse_share_option(const std::string& value) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
        size_t c = value.find(':', start);
        parts.push_back(
            value.substr(start, c == std::string::npos ? std::string::npos : c - start));
        if (c == std::string::npos) break;
        start = c + 1;
    }
    Share s;
    s.read_only = false;
    if (parts.size() > 1 && (parts.back() == "ro" || parts.back() == "rw")) {
        s.read_only = parts.back() == "ro";
        parts.pop_back();
    }
    if (parts.empty() || parts.size() > 2 || parts[0].empty())
        return failf("--share {}: expected HOST[:GUEST][:ro]", value);
    std::error_code ec;
    auto host = fs::absolute(parts[0], ec);
    if (ec || !is_dir(host.string()))
        return failf("--share {}: {} is not an existing directory", value, parts[0]);
    s.host_path = normalize(fs::canonical(host, ec).string());
    if (ec) return failf("--share {}: cannot resolve {}", value, parts[0]);
    s.guest_path = parts.size() == 2 ? parts[1] : s.host_path;
    if (s.guest_path.empty() || s.guest_path[0] != '/')
        return failf("--share {}: the guest path must be absolute", value);
    s.guest_path = normalize(s.guest_path);
    if (s.guest_path == "/") return failf("--share {}: cannot mount over the guest's root", value);
    for (const char* reserved : {"/proc", "/sys", "/dev"})
        if (within(s.guest_path, reserved))
            return failf("--share {}: {} is reserved in the guest", value, reserved);
    return s;
}

Result<SharePlan> plan_shares(const SharePlanInput& in) {
    SharePlan plan;
    if (!in.guest_root.empty()) {
        // First: parents are mounted before what lies below them.
        // (Built in one go: member-wise assignment here trips a g++ 12
        // -Wrestrict false positive.)
        Share r{normalize(in.guest_root), std::string(1, '/'), false, {}, {}};
        plan.shares.push_back(std::move(r));
    }
    for (const auto& dir : system_dirs()) {
        const std::string host = join(in.root, dir);
        struct stat st {};
        if (::lstat(host.c_str(), &st) != 0) continue;
        if (S_ISLNK(st.st_mode)) {
            // Merged-/usr hosts: /bin -> usr/bin. Recreate the link instead of
            // sharing the same files twice.
            char buf[4096];
            ssize_t n = ::readlink(host.c_str(), buf, sizeof(buf) - 1);
            if (n <= 0) continue;
            plan.symlinks.push_back(SymlinkEntry{dir, std::string(buf, static_cast<size_t>(n))});
            continue;
        }
        if (!S_ISDIR(st.st_mode)) continue;
        Share s;
        s.host_path = host;
        s.guest_path = dir;
        s.read_only = true;
        // Root-only files (a 0600 wireguard key, a 0700 backup directory)
        // must not reach the guest just because we were started as root: the
        // guest sees what any user of the host may read, plus the named
        // secrets hidden outright.
        s.world_readable_only = true;
        if (dir == "/etc") s.hidden = etc_secrets();
        plan.shares.push_back(std::move(s));
    }

    const std::string cwd = normalize(in.cwd);
    if (cwd.empty() || cwd[0] != '/') return failf("working directory {} is not absolute", in.cwd);
    if (cwd == "/")
        return fail(
            "refusing to share / read-write into the sandbox; run kvmsandbox from a "
            "project directory");
    Share work;
    work.host_path = join(in.root, cwd);
    work.guest_path = cwd;
    work.read_only = false;
    // A working directory inside a system directory (say /usr/src/x) still
    // gets its own read-write share, mounted on top of the read-only one.
    plan.shares.push_back(std::move(work));

    for (const auto& e : in.extra) {
        for (const auto& s : plan.shares)
            if (s.guest_path == e.guest_path)
                return failf("--share {}: {} is already shared", e.host_path, e.guest_path);
        plan.shares.push_back(e);
    }
    // Parents are mounted before what lies below them.
    std::stable_sort(plan.shares.begin(), plan.shares.end(), [](const Share& a, const Share& b) {
        auto depth = [](const std::string& p) {
            return p == "/" ? 0 : std::count(p.begin(), p.end(), '/');
        };
        return depth(a.guest_path) < depth(b.guest_path);
    });
    for (size_t i = 0; i < plan.shares.size(); ++i) plan.shares[i].tag = fmt::format("kvmsb{}", i);
    return plan;
}

}  // namespace kvmsandbox
