#include "arch/x86/bzimage.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "base/file.h"
#include "fake_boot_images.h"

namespace kvmsandbox::x86 {
namespace {

using testing::make_bzimage;
using testing::put16;

TEST(BzimageTest, AcceptsSyntheticImage) {
    auto f = make_bzimage();
    auto k = parse_bzimage(f);
    ASSERT_TRUE(k.has_value()) << k.error().message;
    EXPECT_EQ(k->protocol, 0x020f);
    EXPECT_EQ(k->setup_sects, 4);
    EXPECT_EQ(k->kernel_offset, 5u * 512);
    EXPECT_EQ(k->kernel_size, 64u * 1024);
    EXPECT_EQ(k->pref_address, 0x1000000u);
    EXPECT_EQ(k->init_size, 0x2000000u);
    EXPECT_EQ(k->kernel_alignment, 0x200000u);
    EXPECT_TRUE(k->relocatable);
    EXPECT_EQ(k->initrd_addr_max, 0x7fffffffu);
    EXPECT_EQ(k->cmdline_size, 2047u);
    EXPECT_EQ(k->xloadflags, kXlfKernel64 | kXlfCanBeLoadedAbove4G);
    EXPECT_EQ(k->loadflags, 0x01);
    // Header bytes 0x1f1 .. 0x26c.
    ASSERT_EQ(k->setup_header.size(), 0x26cu - 0x1f1u);
    EXPECT_EQ(k->setup_header[0x202 - 0x1f1], 'H');
    auto code = k->kernel(f);
    ASSERT_EQ(code.size(), 64u * 1024);
    EXPECT_EQ(code.data(), f.data() + size_t{5} * 512);
}

TEST(BzimageTest, SetupSectsZeroMeansFour) {
    auto f = make_bzimage(0);
    auto k = parse_bzimage(f);
    ASSERT_TRUE(k.has_value()) << k.error().message;
    EXPECT_EQ(k->setup_sects, 4);
    EXPECT_EQ(k->kernel_offset, 5u * 512);
}

TEST(BzimageTest, HeaderCopyCappedAtEddBuffer) {
    auto f = make_bzimage();
    f[0x201] = 0xff;  // claims a header up to 0x301
    auto k = parse_bzimage(f);
    ASSERT_TRUE(k.has_value()) << k.error().message;
    EXPECT_EQ(k->setup_header.size(), kSetupHeaderMaxEnd - kSetupHeaderOffset);
}

TEST(BzimageTest, RejectsRandomBytes) {
    std::vector<uint8_t> f(1 << 20);
    std::mt19937 rng(42);
    for (auto& b : f) b = static_cast<uint8_t>(rng());
    f[0x1fe] = 0;  // make sure the boot flag cannot match by chance
    auto k = parse_bzimage(f);
    ASSERT_FALSE(k.has_value());
    EXPECT_NE(k.error().message.find("not a bzImage"), std::string::npos) << k.error().message;
}

TEST(BzimageTest, RejectsElf) {
    std::vector<uint8_t> f(4096, 0);
    std::memcpy(f.data(),
                "\x7f"
                "ELF\x02\x01\x01",
                7);
    auto k = parse_bzimage(f);
    ASSERT_FALSE(k.has_value());
    EXPECT_NE(k.error().message.find("ELF"), std::string::npos) << k.error().message;
}

TEST(BzimageTest, RejectsTinyFile) {
    std::vector<uint8_t> f(100, 0);
    auto k = parse_bzimage(f);
    ASSERT_FALSE(k.has_value());
    EXPECT_NE(k.error().message.find("too small"), std::string::npos);
}

TEST(BzimageTest, RejectsMissingHdrS) {
    auto f = make_bzimage();
    f[0x202] = 'X';
    auto k = parse_bzimage(f);
    ASSERT_FALSE(k.has_value());
    EXPECT_EQ(k.error().message, "not a bzImage: no HdrS signature at offset 0x202");
}

TEST(BzimageTest, RejectsTruncatedFile) {
    auto f = make_bzimage();
    f.resize(f.size() - 1000);  // syssize now claims more than the file holds
    auto k = parse_bzimage(f);
    ASSERT_FALSE(k.has_value());
    EXPECT_NE(k.error().message.find("truncated bzImage"), std::string::npos) << k.error().message;

    f.resize(size_t{3} * 512);  // cut inside the setup sectors
    k = parse_bzimage(f);
    ASSERT_FALSE(k.has_value());
    EXPECT_NE(k.error().message.find("truncated bzImage"), std::string::npos) << k.error().message;
}

// Found by fuzz_bzimage: a file that ends inside the setup header it
// announces (here at 0x268, header claimed to end at 0x26c) was read past its
// end.
TEST(BzimageTest, RejectsFileEndingInsideTheSetupHeader) {
    auto f = make_bzimage();
    f.resize(0x268);
    auto k = parse_bzimage(f);
    ASSERT_FALSE(k.has_value());
    EXPECT_NE(k.error().message.find("truncated bzImage"), std::string::npos) << k.error().message;
}

TEST(BzimageTest, RejectsOldProtocol) {
    auto f = make_bzimage();
    put16(f, 0x206, 0x020a);
    auto k = parse_bzimage(f);
    ASSERT_FALSE(k.has_value());
    EXPECT_NE(k.error().message.find("2.10"), std::string::npos) << k.error().message;
}

TEST(BzimageTest, RejectsKernelWithout64BitEntry) {
    auto f = make_bzimage();
    put16(f, 0x236, 0);
    auto k = parse_bzimage(f);
    ASSERT_FALSE(k.has_value());
    EXPECT_NE(k.error().message.find("XLF_KERNEL_64"), std::string::npos);
}

TEST(BzimageTest, ParsesHostKernel) {
    std::string path;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/boot", ec)) {
        auto name = e.path().filename().string();
        if (name.starts_with("vmlinuz-")) {
            path = e.path().string();
            break;
        }
    }
    if (path.empty()) GTEST_SKIP() << "no /boot/vmlinuz-* on this machine";
    auto data = read_file(path, 256u << 20);
    if (!data) GTEST_SKIP() << "cannot read " << path << ": " << data.error().message;
    auto k = parse_bzimage(*data);
    ASSERT_TRUE(k.has_value()) << path << ": " << k.error().message;
    EXPECT_GE(k->protocol, kMinBootProtocol);
    EXPECT_TRUE(k->xloadflags & kXlfKernel64);
    EXPECT_GT(k->init_size, k->kernel_size / 2);
    EXPECT_GE(k->cmdline_size, 255u);
    EXPECT_NE(k->initrd_addr_max, 0u);
}

TEST(BzimageTest, ReadFileLimits) {
    EXPECT_FALSE(read_file("/nonexistent/kvmsandbox", 100).has_value());
    auto r = read_file("/proc/self/exe", 10);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("too large"), std::string::npos);
}

TEST(BzimageTest, PayloadIsWhereTheHeaderSays) {
    const std::vector<uint8_t> payload = {0xfd, '7', 'z', 'X', 'Z', 0, 1, 2, 3};
    auto f = make_bzimage(4, 4096, payload);
    auto k = parse_bzimage(f);
    ASSERT_TRUE(k.has_value()) << k.error().message;
    auto p = k->payload(f);
    ASSERT_EQ(p.size(), payload.size());
    EXPECT_TRUE(std::equal(p.begin(), p.end(), payload.begin()));
}

TEST(BzimageTest, PayloadOutsideTheKernelIsEmpty) {
    auto f = make_bzimage(4, 4096, {1, 2, 3, 4});
    put16(f, 0x24c, 0xffff);  // payload_length far past the end
    auto k = parse_bzimage(f);
    ASSERT_TRUE(k.has_value()) << k.error().message;
    EXPECT_TRUE(k->payload(f).empty());
    f[0x24c] = 0;
    f[0x24d] = 0;  // no payload at all
    k = parse_bzimage(f);
    ASSERT_TRUE(k.has_value());
    EXPECT_TRUE(k->payload(f).empty());
}

TEST(BzimageTest, HeaderOnlyParseAgreesWithWholeFile) {
    auto f = make_bzimage();
    auto whole = parse_bzimage(f);
    auto head = parse_bzimage_header(std::span(f).first(0x400), f.size());
    ASSERT_TRUE(whole.has_value());
    ASSERT_TRUE(head.has_value()) << head.error().message;
    EXPECT_EQ(head->kernel_size, whole->kernel_size);
    EXPECT_EQ(head->setup_header, whole->setup_header);
    // The size still catches a cut-off file, and the head must hold the header.
    EXPECT_FALSE(parse_bzimage_header(std::span(f).first(0x400), 0x1000).has_value());
    EXPECT_FALSE(parse_bzimage_header(std::span(f).first(0x240), f.size()).has_value());
}

}  // namespace
}  // namespace kvmsandbox::x86
