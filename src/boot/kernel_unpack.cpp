#include "boot/kernel_unpack.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <fmt/core.h>

#include "arch/x86/bzimage.h"
#include "arch/x86/vmlinux.h"
#include "base/file.h"
#include "base/io.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "boot/boot_cache.h"
#include "boot/cache_files.h"

extern char** environ;

namespace kvmsandbox {

namespace {

// A bzImage is ~8-15 MiB; this only keeps a wrong path from eating memory.
constexpr size_t kMaxKernelFile = 256u << 20;
// Each unpacked kernel is ~60 MiB: keep the current and the previous one.
constexpr size_t kKeepUnpacked = 2;
// Bumped when the unpacking or the file's meaning changes.
constexpr std::string_view kFormat = "vmlinux-1\n";

bool starts_with(std::span<const uint8_t> b, std::initializer_list<uint8_t> magic) {
    if (b.size() < magic.size()) return false;
    size_t i = 0;
    for (uint8_t m : magic)
        if (b[i++] != m) return false;
    return true;
}

uint32_t le32_at_end(std::span<const uint8_t> b) {
    const size_t n = b.size();
    return uint32_t{b[n - 4]} | (uint32_t{b[n - 3]} << 8) | (uint32_t{b[n - 2]} << 16) |
           (uint32_t{b[n - 1]} << 24);
}

// Runs argv with stdin from `in_fd`, stdout to `out_fd`, stderr discarded.
Result<void> run_filter(const std::vector<std::string>& argv, int in_fd, int out_fd) {
    UniqueFd devnull(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    if (!devnull) return fail_errno("cannot open /dev/null");
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0) return fail("posix_spawn_file_actions_init");
    posix_spawn_file_actions_adddup2(&fa, in_fd, STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, devnull.get(), STDERR_FILENO);
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    int err = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err != 0) return failf("cannot run {}: {}", argv[0], std::strerror(err));
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return fail_errno("waitpid " + argv[0]);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return failf("{} failed to decompress the kernel (status {:#x})", argv[0], status);
    return {};
}

// The vmlinux in `fd` has whole, well-formed headers and segments.
Result<void> check_vmlinux(int fd) {
    KS_TRY_ASSIGN(auto head, read_head(fd, x86::kVmlinuxHeadBytes));
    KS_TRY_ASSIGN(auto k, x86::parse_vmlinux(head.bytes, head.file_size));
    return {};
}

}  // namespace

KernelCompression detect_compression(std::span<const uint8_t> p) {
    if (starts_with(p, {0x1f, 0x8b})) return KernelCompression::Gzip;
    if (starts_with(p, {'B', 'Z', 'h'})) return KernelCompression::Bzip2;
    if (starts_with(p, {0x5d, 0x00, 0x00})) return KernelCompression::Lzma;
    if (starts_with(p, {0xfd, '7', 'z', 'X', 'Z', 0x00})) return KernelCompression::Xz;
    if (starts_with(p, {0x89, 'L', 'Z', 'O'})) return KernelCompression::Lzo;
    if (starts_with(p, {0x02, 0x21, 0x4c, 0x18})) return KernelCompression::Lz4;
    if (starts_with(p, {0x28, 0xb5, 0x2f, 0xfd})) return KernelCompression::Zstd;
    return KernelCompression::Unknown;
}

std::vector<std::string> decompressor_argv(KernelCompression c) {
    switch (c) {
        case KernelCompression::Gzip:
            return {"gzip", "-dc"};
        case KernelCompression::Bzip2:
            return {"bzip2", "-dc"};
        case KernelCompression::Lzma:
            return {"xz", "--format=lzma", "-dc"};
        case KernelCompression::Xz:
            return {"xz", "-dc"};
        case KernelCompression::Lzo:
            return {"lzop", "-dc"};
        case KernelCompression::Lz4:
            return {"lz4", "-dc"};
        case KernelCompression::Zstd:
            return {"zstd", "-dcq"};
        case KernelCompression::Unknown:
            break;
    }
    return {};
}

Result<void> unpack_kernel(std::span<const uint8_t> file, int out_fd) {
    KS_TRY_ASSIGN(auto bz, x86::parse_bzimage(file));
    auto payload = bz.payload(file);
    if (payload.size() < 16) return fail("the bzImage names no compressed payload");
    const auto kind = detect_compression(payload);
    auto argv = decompressor_argv(kind);
    if (argv.empty()) return fail("the bzImage's payload is in an unknown compression format");
    // The kernel build appends the uncompressed size as 4 bytes; gzip's own
    // trailer ends with the same number, every other format sees it as
    // trailing garbage.
    const uint32_t expect = le32_at_end(payload);
    auto input = kind == KernelCompression::Gzip ? payload : payload.first(payload.size() - 4);

    UniqueFd in(::memfd_create("kvmsandbox-kernel-payload", MFD_CLOEXEC));
    if (!in) return fail_errno("memfd_create");
    if (auto r = write_all(in.get(), input); !r)
        return fail("writing the kernel payload: " + r.error().message);
    if (::lseek(in.get(), 0, SEEK_SET) != 0) return fail_errno("writing the kernel payload");
    if (::ftruncate(out_fd, 0) != 0 || ::lseek(out_fd, 0, SEEK_SET) != 0)
        return fail_errno("truncating the unpacked kernel file");
    KS_TRY(run_filter(argv, in.get(), out_fd));

    struct stat st {};
    if (::fstat(out_fd, &st) != 0) return fail_errno("fstat");
    if (static_cast<uint64_t>(st.st_size) % (uint64_t{1} << 32) != expect)
        return failf("{} produced {} bytes, the kernel says {}", argv[0], st.st_size, expect);
    return check_vmlinux(out_fd);
}

Result<std::string> cached_vmlinux(const std::string& dir, const std::string& kernel_path) {
    if (dir.empty()) return fail("no cache directory");
    const std::string key = std::string(kFormat) + file_identity(kernel_path);
    const std::string path = fmt::format("{}/{:016x}.vmlinux", dir, fnv1a64(key));
    // The key is in the name, not the file (the file is the bare ELF the
    // kernel loads); a hit is a file whose headers are whole.
    if (UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)); fd && check_vmlinux(fd.get()))
        return path;

    KS_TRY_ASSIGN(auto file, read_file(kernel_path, kMaxKernelFile));
    if (!make_private_dir(dir)) return failf("cannot create {}", dir);
    std::string tmp = path + ".XXXXXX";
    UniqueFd out(::mkostemp(tmp.data(), O_CLOEXEC));
    if (!out) return fail_errno("cannot create a file in " + dir);
    auto r = unpack_kernel(file, out.get());
    if (!r || ::rename(tmp.c_str(), path.c_str()) != 0) {
        ::unlink(tmp.c_str());
        if (!r) return std::unexpected(r.error());
        return fail_errno("cannot rename the unpacked kernel into " + dir);
    }
    prune_cache(dir, ".vmlinux", kKeepUnpacked);
    return path;
}

std::string unpacked_kernel_for(const std::string& kernel_path) {
    const std::string dir = BootCache::default_dir();
    if (dir.empty()) return {};
    auto path = cached_vmlinux(dir, kernel_path);
    if (!path) {
        log::debug("booting the bzImage {}: no unpacked kernel ({})", kernel_path,
                   path.error().message);
        return {};
    }
    return *path;
}

}  // namespace kvmsandbox
