#include "boot/cpio_writer.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "base/file.h"

namespace kvmsandbox {

namespace {

constexpr std::string_view kTrailer = "TRAILER!!!";
constexpr size_t kHeaderSize = 110;  // "070701" + 13 fields of 8 hex digits
constexpr size_t kMaxPath = 4096;    // PATH_MAX in the guest
constexpr size_t kModeField = 14;    // offset of c_mode in the header

void pad4(std::vector<uint8_t>& out) {
    while (out.size() % 4 != 0) out.push_back(0);
}

void put_hex8(uint8_t* p, uint32_t v) {
    static constexpr char kDigits[] = "0123456789ABCDEF";
    for (int i = 7; i >= 0; --i) {
        p[i] = static_cast<uint8_t>(kDigits[v & 0xf]);
        v >>= 4;
    }
}

}  // namespace

Result<std::string> CpioWriter::prepare(std::string_view path, Kind kind) {
    std::string_view p = path;
    while (!p.empty() && p.front() == '/') p.remove_prefix(1);
    if (p.empty()) return failf("cpio: invalid empty path '{}'", path);
    if (p.size() > kMaxPath) return failf("cpio: path too long ({} bytes)", p.size());
    if (p.find('\0') != std::string_view::npos) return failf("cpio: path contains a NUL byte");
    if (p == kTrailer) return failf("cpio: path '{}' is reserved for the trailer", p);

    // Validate everything before adding any parent, so a refused path leaves
    // the archive unchanged.
    std::vector<size_t> parent_ends;  // lengths of the parent prefixes
    size_t start = 0;
    while (true) {
        size_t slash = p.find('/', start);
        size_t end = slash == std::string_view::npos ? p.size() : slash;
        std::string_view comp = p.substr(start, end - start);
        if (comp.empty() || comp == "." || comp == "..")
            return failf("cpio: invalid path '{}' (empty, '.' or '..' component)", path);
        if (slash == std::string_view::npos) break;
        auto it = nodes_.find(p.substr(0, slash));
        if (it != nodes_.end() && it->second.kind != Kind::kDirectory)
            return failf("cpio: cannot add '{}': '{}' is not a directory", path,
                         p.substr(0, slash));
        parent_ends.push_back(slash);
        start = slash + 1;
    }
    std::string name(p);
    auto it = nodes_.find(name);
    if (it != nodes_.end() && !(kind == Kind::kDirectory && it->second.kind == Kind::kDirectory))
        return failf("cpio: '{}' is already in the archive", name);

    for (size_t end : parent_ends) {
        std::string parent(p.substr(0, end));
        if (nodes_.contains(parent)) continue;
        nodes_.emplace(parent, Node{Kind::kDirectory, out_.size()});
        emit(parent, S_IFDIR | 0755, 2, {});
    }
    return name;
}

void CpioWriter::emit(const std::string& name, uint32_t mode, uint32_t nlink,
                      std::span<const uint8_t> data, bool trailer) {
    size_t at = out_.size();
    out_.resize(at + kHeaderSize);
    uint8_t* h = out_.data() + at;
    std::memcpy(h, "070701", 6);
    const uint32_t fields[13] = {
        trailer ? 0 : next_ino_++,
        mode,
        0,  // uid
        0,  // gid
        nlink,
        0,  // mtime: reproducible output
        static_cast<uint32_t>(data.size()),
        0,  // devmajor
        0,  // devminor
        0,  // rdevmajor
        0,  // rdevminor
        static_cast<uint32_t>(name.size() + 1),
        0,  // check (newc has no checksum)
    };
    for (size_t i = 0; i < 13; ++i) put_hex8(h + 6 + 8 * i, fields[i]);
    out_.insert(out_.end(), name.begin(), name.end());
    out_.push_back(0);
    pad4(out_);
    out_.insert(out_.end(), data.begin(), data.end());
    pad4(out_);
}

Result<void> CpioWriter::add_directory(std::string_view path, uint32_t mode) {
    KS_TRY_ASSIGN(auto name, prepare(path, Kind::kDirectory));
    const uint32_t full = S_IFDIR | (mode & 07777);
    auto it = nodes_.find(name);
    if (it != nodes_.end()) {
        // Already emitted (maybe implicitly as a parent): patch its mode in
        // place rather than emit a second entry.
        put_hex8(out_.data() + it->second.header_offset + kModeField, full);
        return {};
    }
    nodes_.emplace(name, Node{Kind::kDirectory, out_.size()});
    emit(name, full, 2, {});
    return {};
}

Result<void> CpioWriter::add_file(std::string_view path, uint32_t mode,
                                  std::span<const uint8_t> data) {
    // c_filesize is 32 bits.
    if (data.size() > 0xffffffffu)
        return failf("cpio: '{}' is too large ({} bytes) for the newc format", path, data.size());
    KS_TRY_ASSIGN(auto name, prepare(path, Kind::kFile));
    nodes_.emplace(name, Node{Kind::kFile, out_.size()});
    // nlink 1: the kernel treats regular files with nlink >= 2 as hard links
    // to be matched by inode number.
    emit(name, S_IFREG | (mode & 07777), 1, data);
    return {};
}

Result<void> CpioWriter::add_file(std::string_view path, uint32_t mode, std::string_view data) {
    return add_file(
        path, mode,
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

Result<void> CpioWriter::add_file_from_disk(std::string_view path, const std::string& host_path,
                                            uint32_t mode, size_t max_size) {
    KS_TRY_ASSIGN(auto data, read_file(host_path, std::min<size_t>(max_size, 0xffffffffu)));
    return add_file(path, mode, std::span<const uint8_t>(data));
}

Result<void> CpioWriter::add_symlink(std::string_view path, std::string_view target) {
    if (target.empty() || target.size() > kMaxPath || target.find('\0') != std::string_view::npos)
        return failf("cpio: invalid symlink target for '{}'", path);
    KS_TRY_ASSIGN(auto name, prepare(path, Kind::kSymlink));
    nodes_.emplace(name, Node{Kind::kSymlink, out_.size()});
    // The target is the entry's data, without a NUL.
    emit(name, S_IFLNK | 0777, 1,
         std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(target.data()), target.size()));
    return {};
}

std::vector<uint8_t> CpioWriter::finish() {
    emit(std::string(kTrailer), 0, 1, {}, true);
    std::vector<uint8_t> out = std::move(out_);
    out_.clear();
    nodes_.clear();
    next_ino_ = 1;
    return out;
}

void append_cpio_archive(std::vector<uint8_t>& out, std::span<const uint8_t> archive) {
    pad4(out);
    out.insert(out.end(), archive.begin(), archive.end());
}

std::vector<uint8_t> concat_cpio_archives(std::span<const std::span<const uint8_t>> archives) {
    std::vector<uint8_t> out;
    size_t total = 0;
    for (auto a : archives) total += a.size() + 3;
    out.reserve(total);
    for (auto a : archives) append_cpio_archive(out, a);
    return out;
}

}  // namespace kvmsandbox
