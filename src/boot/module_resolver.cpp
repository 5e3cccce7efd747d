#include "boot/module_resolver.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "base/file.h"
#include "base/unique_fd.h"

namespace kvmsandbox {

namespace {

// modules.dep is ~0.5 MiB on a full distribution kernel; these caps only stop
// a wrong directory from making us read something huge.
constexpr size_t kMaxIndexSize = 64u << 20;

constexpr std::array<std::string_view, 3> kCompressedSuffixes = {".xz", ".zst", ".gz"};

std::string_view basename_of(std::string_view p) {
    size_t slash = p.rfind('/');
    return slash == std::string_view::npos ? p : p.substr(slash + 1);
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

std::string_view compressed_suffix(std::string_view file) {
    for (auto suf : kCompressedSuffixes)
        if (file.ends_with(std::string(".ko") + std::string(suf))) return suf;
    return {};
}

template <typename F>
void for_each_line(std::string_view text, F&& f) {
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        f(text.substr(pos, nl - pos));
        pos = nl + 1;
    }
}

}  // namespace

std::string canonical_module_name(std::string_view name_or_path) {
    std::string_view n = basename_of(name_or_path);
    auto suf = compressed_suffix(n);
    if (!suf.empty()) n.remove_suffix(suf.size());
    if (n.ends_with(".ko")) n.remove_suffix(3);
    std::string out(n);
    std::replace(out.begin(), out.end(), '-', '_');
    return out;
}

std::string Module::file_name() const {
    return std::string(basename_of(relative_path));
}

bool Module::compressed() const {
    return !compressed_suffix(file_name()).empty();
}

Result<ModuleResolver> ModuleResolver::open(const std::string& module_dir,
                                            ModuleResolverOptions options) {
    ModuleResolver r;
    r.dir_ = module_dir;
    r.options_ = std::move(options);

    auto dep = read_file(module_dir + "/modules.dep", kMaxIndexSize);
    if (!dep)
        return failf("cannot read the module index of {}: {} (is depmod run?)", module_dir,
                     dep.error().message);
    std::string_view text(reinterpret_cast<const char*>(dep->data()), dep->size());
    for_each_line(text, [&](std::string_view line) {
        line = trim(line);
        if (line.empty() || line.front() == '#') return;
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) return;  // not a dependency line
        std::string_view path = trim(line.substr(0, colon));
        if (path.empty()) return;
        Entry e{std::string(path), {}};
        std::string_view rest = line.substr(colon + 1);
        while (!rest.empty()) {
            rest = trim(rest);
            size_t sp = rest.find_first_of(" \t");
            std::string_view word = rest.substr(0, sp);
            if (!word.empty()) e.deps.push_back(canonical_module_name(word));
            if (sp == std::string_view::npos) break;
            rest = rest.substr(sp);
        }
        // depmod lists each module once; if a tree has duplicates, the first
        // line wins, as modprobe's lookup does.
        r.modules_.emplace(canonical_module_name(path), std::move(e));
    });

    auto builtin = read_file(module_dir + "/modules.builtin", kMaxIndexSize);
    if (builtin) {
        std::string_view b(reinterpret_cast<const char*>(builtin->data()), builtin->size());
        for_each_line(b, [&](std::string_view line) {
            line = trim(line);
            if (!line.empty() && line.front() != '#')
                r.builtin_.insert(canonical_module_name(line));
        });
    }
    return r;
}

bool ModuleResolver::is_builtin(std::string_view name) const {
    return builtin_.contains(canonical_module_name(name));
}

bool ModuleResolver::has_module(std::string_view name) const {
    return modules_.contains(canonical_module_name(name));
}

std::vector<std::string> ModuleResolver::missing(const std::vector<std::string>& wanted) const {
    std::vector<std::string> out;
    for (const auto& w : wanted)
        if (!has_module(w) && !is_builtin(w)) out.push_back(w);
    return out;
}

Result<std::vector<Module>> ModuleResolver::resolve(const std::vector<std::string>& wanted) const {
    enum class State { kVisiting, kDone };
    std::map<std::string, State, std::less<>> state;
    std::vector<Module> order;
    std::vector<std::string> stack;  // the current dependency chain, for messages

    // Depth-first, post-order: a module goes out after all its dependencies.
    // A name met again while still on the stack is a cycle; the kernel
    // cannot load such modules, so it is an error rather than a hang.
    auto visit = [&](auto&& self, const std::string& name) -> Result<void> {
        auto st = state.find(name);
        if (st != state.end()) {
            if (st->second == State::kDone) return {};
            std::string chain;
            auto from = std::find(stack.begin(), stack.end(), name);
            for (auto i = from; i != stack.end(); ++i) chain += *i + " -> ";
            return failf("dependency cycle in {}/modules.dep: {}{}", dir_, chain, name);
        }
        // Built in wins even if a stray .ko of the same name is in the tree:
        // the kernel would refuse to load it a second time.
        if (builtin_.contains(name)) {
            state[name] = State::kDone;
            return {};
        }
        auto it = modules_.find(name);
        if (it == modules_.end()) {
            if (stack.empty())
                return failf("module {} not found in {} and not built in", name, dir_);
            return failf("module {} (needed by {}) not found in {} and not built in", name,
                         stack.back(), dir_);
        }
        state[name] = State::kVisiting;
        stack.push_back(name);
        const Entry& e = it->second;
        // modules.dep lists the deepest dependencies last; modprobe loads
        // from the end, and so do we (the post-order makes any order
        // correct; this one matches modprobe's).
        for (auto d = e.deps.rbegin(); d != e.deps.rend(); ++d) {
            auto r = self(self, *d);
            if (!r) return r;
        }
        stack.pop_back();
        state[name] = State::kDone;

        Module m;
        m.name = name;
        m.relative_path = e.relative_path;
        m.absolute_path =
            e.relative_path.starts_with('/') ? e.relative_path : dir_ + "/" + e.relative_path;
        auto suf = compressed_suffix(m.file_name());
        if (!suf.empty() && std::find(options_.loadable_compressed_suffixes.begin(),
                                      options_.loadable_compressed_suffixes.end(),
                                      suf) == options_.loadable_compressed_suffixes.end())
            return failf(
                "module {} is compressed ({}) and this kernel cannot decompress {} modules "
                "itself (needs CONFIG_MODULE_DECOMPRESS with that format); kvmsandbox has no "
                "decompressor in the guest: use a kernel with uncompressed modules",
                name, m.absolute_path, suf);
        struct stat sb {};
        if (::stat(m.absolute_path.c_str(), &sb) != 0 || !S_ISREG(sb.st_mode))
            return failf("module {} is listed in {}/modules.dep but {} is missing", name, dir_,
                         m.absolute_path);
        order.push_back(std::move(m));
        return {};
    };

    for (const auto& w : wanted) {
        std::string name = canonical_module_name(w);
        if (name.empty()) return failf("invalid module name '{}'", w);
        KS_TRY(visit(visit, name));
    }
    return order;
}

Result<std::string> release_of_kernel_image(const std::string& path) {
    // The setup header's kernel_version (offset 0x20e, boot protocol >= 2.00)
    // is a 16-bit offset, minus 0x200, of a NUL-terminated string inside the
    // setup code: everything needed lies in the first 0x200 + 64 KiB.
    constexpr size_t kWindow = 0x200 + 0x10000 + 256;
    constexpr size_t kMaxVersion = 256;
    int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (raw < 0) return fail_errno(fmt::format("cannot open kernel {}", path));
    UniqueFd fd(raw);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return fail_errno(fmt::format("cannot stat {}", path));
    if (!S_ISREG(st.st_mode)) return failf("kernel {} is not a regular file", path);
    std::vector<uint8_t> buf(std::min<size_t>(kWindow, static_cast<size_t>(st.st_size)));
    size_t done = 0;
    while (done < buf.size()) {
        ssize_t n =
            ::pread(fd.get(), buf.data() + done, buf.size() - done, static_cast<off_t>(done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_errno(fmt::format("cannot read kernel {}", path));
        }
        if (n == 0) break;
        done += static_cast<size_t>(n);
    }
    buf.resize(done);

    auto le16 = [&](size_t off) { return static_cast<uint16_t>(buf[off] | (buf[off + 1] << 8)); };
    if (buf.size() < 0x210 || le16(0x1fe) != 0xaa55 || std::memcmp(&buf[0x202], "HdrS", 4) != 0)
        return failf("{} is not a bzImage kernel (no x86 setup header)", path);
    if (le16(0x206) < 0x0200)
        return failf("{}: boot protocol {:#x} too old to carry a version string", path,
                     le16(0x206));
    uint16_t ptr = le16(0x20e);
    size_t at = 0x200 + static_cast<size_t>(ptr);
    if (ptr == 0 || at >= buf.size())
        return failf("{}: no kernel version string in the header", path);
    std::string version;
    for (size_t i = at; i < buf.size() && i < at + kMaxVersion && buf[i] != 0; ++i)
        version.push_back(static_cast<char>(buf[i]));
    std::string release = version.substr(0, version.find(' '));
    // The release becomes a path component under /lib/modules.
    bool printable = std::all_of(release.begin(), release.end(),
                                 [](char c) { return c > ' ' && c < 0x7f && c != '/'; });
    if (release.empty() || !printable || release == "." || release == "..")
        return failf("{}: unreadable kernel version string", path);
    return release;
}

}  // namespace kvmsandbox
