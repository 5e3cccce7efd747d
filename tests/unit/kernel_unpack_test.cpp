#include "boot/kernel_unpack.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "arch/x86/bzimage.h"
#include "arch/x86/vmlinux.h"
#include "base/file.h"
#include "base/unique_fd.h"
#include "fake_boot_images.h"
#include "temp_dir.h"

namespace kvmsandbox {
namespace {

namespace fs = std::filesystem;
using testing::make_bzimage;
using testing::make_vmlinux;

using TempDir = testing::TempDir;

std::vector<uint8_t> fake_vmlinux() {
    std::vector<uint8_t> text(20000);
    for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<uint8_t>(i * 31);
    return make_vmlinux(0x1000000, {{0x1000000, text, text.size()}});
}

void write_file(const fs::path& p, const std::vector<uint8_t>& b) {
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

bool have(const char* tool) {
    return std::system(fmt::format("command -v {} >/dev/null 2>&1", tool).c_str()) == 0;
}

// `data` compressed as the kernel build does it: `cmd` (reading stdin,
// writing stdout), then for every format but gzip the uncompressed size as
// 4 little-endian bytes.
std::vector<uint8_t> compress(const std::vector<uint8_t>& data, const std::string& cmd,
                              bool size_append) {
    TempDir d;
    write_file(d.path / "in", data);
    EXPECT_EQ(std::system(fmt::format("{} <{} >{}", cmd, (d.path / "in").string(),
                                      (d.path / "out").string())
                              .c_str()),
              0);
    auto out = read_file((d.path / "out").string(), 64 << 20);
    EXPECT_TRUE(out.has_value());
    if (size_append)
        for (int i = 0; i < 4; ++i) out->push_back(static_cast<uint8_t>(data.size() >> (8 * i)));
    return *out;
}

UniqueFd temp_out() {
    return UniqueFd(::memfd_create("unpacked", MFD_CLOEXEC));
}

uint64_t size_of(int fd) {
    struct stat st {};
    ::fstat(fd, &st);
    return static_cast<uint64_t>(st.st_size);
}

TEST(KernelUnpackTest, DetectsTheKernelsCompressionFormats) {
    using C = KernelCompression;
    auto is = [](std::vector<uint8_t> b) { return detect_compression(b); };
    EXPECT_EQ(is({0x1f, 0x8b, 8}), C::Gzip);
    EXPECT_EQ(is({'B', 'Z', 'h', '9'}), C::Bzip2);
    EXPECT_EQ(is({0x5d, 0, 0, 0x80}), C::Lzma);
    EXPECT_EQ(is({0xfd, '7', 'z', 'X', 'Z', 0, 0}), C::Xz);
    EXPECT_EQ(is({0x89, 'L', 'Z', 'O', 0}), C::Lzo);
    EXPECT_EQ(is({0x02, 0x21, 0x4c, 0x18}), C::Lz4);
    EXPECT_EQ(is({0x28, 0xb5, 0x2f, 0xfd}), C::Zstd);
    EXPECT_EQ(is({0x7f, 'E', 'L', 'F'}), C::Unknown);
    EXPECT_EQ(is({0xfd}), C::Unknown);
    EXPECT_EQ(is({}), C::Unknown);
    EXPECT_TRUE(decompressor_argv(C::Unknown).empty());
    EXPECT_EQ(decompressor_argv(C::Xz).front(), "xz");
}

TEST(KernelUnpackTest, UnpacksAGzipKernel) {
    auto vm = fake_vmlinux();
    auto bz = make_bzimage(4, 4096, compress(vm, "gzip -9n", false));
    auto out = temp_out();
    auto r = unpack_kernel(bz, out.get());
    ASSERT_TRUE(r.has_value()) << r.error().message;
    ASSERT_EQ(size_of(out.get()), vm.size());
    std::vector<uint8_t> got(vm.size());
    ASSERT_EQ(::pread(out.get(), got.data(), got.size(), 0), static_cast<ssize_t>(got.size()));
    EXPECT_EQ(got, vm);
}

TEST(KernelUnpackTest, UnpacksAnXzKernelWithItsAppendedSize) {
    if (!have("xz")) GTEST_SKIP() << "no xz on this host (Debian's kernels are xz-compressed)";
    auto vm = fake_vmlinux();
    auto bz = make_bzimage(4, 4096, compress(vm, "xz --check=crc32 -c", true));
    auto out = temp_out();
    auto r = unpack_kernel(bz, out.get());
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(size_of(out.get()), vm.size());
}

TEST(KernelUnpackTest, RefusesAWrongSizeACorruptStreamOrANonKernel) {
    if (!have("xz")) GTEST_SKIP() << "no xz on this host";
    auto vm = fake_vmlinux();
    auto payload = compress(vm, "xz --check=crc32 -c", true);
    auto wrong_size = payload;
    wrong_size.back() ^= 1;
    auto out = temp_out();
    auto r = unpack_kernel(make_bzimage(4, 4096, wrong_size), out.get());
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("the kernel says"), std::string::npos) << r.error().message;

    auto corrupt = payload;
    corrupt[corrupt.size() / 2] ^= 0xff;
    r = unpack_kernel(make_bzimage(4, 4096, corrupt), out.get());
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("failed to decompress"), std::string::npos)
        << r.error().message;

    std::vector<uint8_t> text(5000, 'x');
    r = unpack_kernel(make_bzimage(4, 4096, compress(text, "xz --check=crc32 -c", true)),
                      out.get());
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("not a vmlinux"), std::string::npos) << r.error().message;

    std::vector<uint8_t> unknown(64, 0x42);
    r = unpack_kernel(make_bzimage(4, 4096, unknown), out.get());
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("unknown compression"), std::string::npos);
    r = unpack_kernel(make_bzimage(), out.get());  // no payload named
    ASSERT_FALSE(r.has_value());
}

TEST(KernelUnpackTest, CacheReusesTheUnpackedKernelUntilTheImageChanges) {
    TempDir d;
    const auto kernel = d.path / "vmlinuz";
    const auto cache = d.path / "cache";
    write_file(kernel, make_bzimage(4, 4096, compress(fake_vmlinux(), "gzip -9n", false)));

    auto first = cached_vmlinux(cache.string(), kernel.string());
    ASSERT_TRUE(first.has_value()) << first.error().message;
    EXPECT_EQ(fs::status(cache).permissions() & fs::perms::all, fs::perms::owner_all);
    struct stat a {};
    ASSERT_EQ(::stat(first->c_str(), &a), 0);
    auto again = cached_vmlinux(cache.string(), kernel.string());
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(*again, *first);
    struct stat b {};
    ASSERT_EQ(::stat(again->c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino) << "a hit must not unpack again";

    // A cut-off cache file is unpacked again.
    fs::resize_file(*first, 100);
    auto repaired = cached_vmlinux(cache.string(), kernel.string());
    ASSERT_TRUE(repaired.has_value());
    EXPECT_EQ(fs::file_size(*repaired), fake_vmlinux().size());

    // A reinstalled kernel gets its own file; only the newest two stay.
    std::string last;
    for (int i = 0; i < 3; ++i) {
        fs::remove(kernel);
        write_file(kernel, make_bzimage(4, 4096 + 16 * (i + 1),
                                        compress(fake_vmlinux(), "gzip -9n", false)));
        auto p = cached_vmlinux(cache.string(), kernel.string());
        ASSERT_TRUE(p.has_value());
        EXPECT_NE(*p, *first);
        last = *p;
    }
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(cache)) n += e.path().extension() == ".vmlinux";
    EXPECT_EQ(n, 2u);
    EXPECT_TRUE(fs::exists(last));
}

TEST(KernelUnpackTest, NoCacheOrAnUnusableKernelMeansNoUnpackedKernel) {
    TempDir d;
    EXPECT_FALSE(cached_vmlinux("", "/nonexistent").has_value());
    const auto kernel = d.path / "vmlinuz";
    write_file(kernel, make_bzimage());  // no payload
    EXPECT_FALSE(cached_vmlinux((d.path / "c").string(), kernel.string()).has_value());
    // Nothing half-written is left behind.
    if (fs::exists(d.path / "c")) {
        EXPECT_TRUE(fs::is_empty(d.path / "c"));
    }
}

// The real thing: this host's own kernel (Debian's is xz-compressed)
// unpacks to a vmlinux whose entry point the loader accepts.
TEST(KernelUnpackTest, UnpacksTheHostKernel) {
    std::string path;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/boot", ec))
        if (e.path().filename().string().starts_with("vmlinuz-")) path = e.path().string();
    if (path.empty()) GTEST_SKIP() << "no /boot/vmlinuz-* on this machine";
    auto file = read_file(path, 256u << 20);
    if (!file) GTEST_SKIP() << "cannot read " << path << ": " << file.error().message;
    auto bz = x86::parse_bzimage(*file);
    ASSERT_TRUE(bz.has_value()) << path << ": " << bz.error().message;
    auto kind = detect_compression(bz->payload(*file));
    if (!have(decompressor_argv(kind).empty() ? "false" : decompressor_argv(kind)[0].c_str()))
        GTEST_SKIP() << "no decompressor for " << path << " on this host";
    auto out = temp_out();
    auto r = unpack_kernel(*file, out.get());
    ASSERT_TRUE(r.has_value()) << path << ": " << r.error().message;
    auto head = read_head(out.get(), x86::kVmlinuxHeadBytes);
    ASSERT_TRUE(head.has_value());
    auto k = x86::parse_vmlinux(head->bytes, head->file_size);
    ASSERT_TRUE(k.has_value()) << k.error().message;
    EXPECT_GE(k->load_start, 0x100000u);
    EXPECT_GT(k->load_end - k->load_start, 8u << 20);
}

}  // namespace
}  // namespace kvmsandbox
