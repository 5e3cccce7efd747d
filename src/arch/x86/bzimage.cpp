#include "arch/x86/bzimage.h"

#include <cstring>

namespace kvmsandbox::x86 {

namespace {

uint8_t le8(std::span<const uint8_t> b, size_t off) {
    return b[off];
}
uint16_t le16(std::span<const uint8_t> b, size_t off) {
    return static_cast<uint16_t>(b[off] | (b[off + 1] << 8));
}
uint32_t le32(std::span<const uint8_t> b, size_t off) {
    return uint32_t{le16(b, off)} | (uint32_t{le16(b, off + 2)} << 16);
}
uint64_t le64(std::span<const uint8_t> b, size_t off) {
    return uint64_t{le32(b, off)} | (uint64_t{le32(b, off + 4)} << 32);
}

// Setup header field offsets (file offsets; the same in the zero page).
constexpr size_t kSetupSects = 0x1f1;
constexpr size_t kSyssize = 0x1f4;
constexpr size_t kBootFlag = 0x1fe;
constexpr size_t kJump = 0x200;
constexpr size_t kHeaderMagic = 0x202;
constexpr size_t kVersion = 0x206;
constexpr size_t kLoadflags = 0x211;
constexpr size_t kInitrdAddrMax = 0x22c;
constexpr size_t kKernelAlignment = 0x230;
constexpr size_t kRelocatableKernel = 0x234;
constexpr size_t kXloadflags = 0x236;
constexpr size_t kCmdlineSize = 0x238;
constexpr size_t kPayloadOffset = 0x248;
constexpr size_t kPayloadLength = 0x24c;
constexpr size_t kPrefAddress = 0x258;
constexpr size_t kInitSize = 0x260;

constexpr uint16_t kBootFlagValue = 0xaa55;
constexpr uint32_t kHdrS = 0x53726448;  // "HdrS" little-endian

}  // namespace

Result<BzImage> parse_bzimage(std::span<const uint8_t> file) {
    return parse_bzimage_header(file, file.size());
}

Result<BzImage> parse_bzimage_header(std::span<const uint8_t> file, uint64_t file_size) {
    if (file.size() > file_size) return fail("bzImage header is longer than its file");
    // An ELF vmlinux is the most likely wrong input; say so rather than
    // complaining about a missing boot flag.
    if (file.size() >= 4 && std::memcmp(file.data(),
                                        "\x7f"
                                        "ELF",
                                        4) == 0)
        return fail(
            "not a bzImage: this is an ELF file (an uncompressed vmlinux?); "
            "pass the bzImage (arch/x86/boot/bzImage or /boot/vmlinuz-*)");
    if (file.size() < kMinBzImageSize)
        return failf("not a bzImage: file too small ({} bytes, a setup header needs {})",
                     file.size(), kMinBzImageSize);
    if (le16(file, kBootFlag) != kBootFlagValue)
        return failf("not a bzImage: no 0xAA55 boot flag at offset 0x1fe (found {:#06x})",
                     le16(file, kBootFlag));
    if (le32(file, kHeaderMagic) != kHdrS)
        return fail("not a bzImage: no HdrS signature at offset 0x202");

    BzImage k;
    k.protocol = le16(file, kVersion);
    if (k.protocol < kMinBootProtocol)
        return failf(
            "unsupported bzImage: boot protocol {}.{:02} is older than 2.12 (needed for the "
            "64-bit entry point)",
            k.protocol >> 8, k.protocol & 0xff);

    k.xloadflags = le16(file, kXloadflags);
    if (!(k.xloadflags & kXlfKernel64))
        return fail(
            "unsupported bzImage: no 64-bit entry point (XLF_KERNEL_64 not set; is it a "
            "32-bit kernel?)");

    // The header ends where the short jump at 0x200 lands (boot protocol:
    // 0x202 + byte at 0x201). A jump that is not a short jmp, or that lands
    // before the fields we read, means a corrupt header.
    if (le8(file, kJump) != 0xeb) return fail("not a bzImage: no short jump at offset 0x200");
    size_t header_end = 0x202 + size_t{le8(file, kJump + 1)};
    if (header_end < kMinHeaderEnd)
        return failf("unsupported bzImage: setup header ends at {:#x}, before init_size",
                     header_end);
    if (header_end > kSetupHeaderMaxEnd) header_end = kSetupHeaderMaxEnd;
    if (header_end > file.size())
        return failf(
            "truncated bzImage: its setup header ends at {:#x}, past the file's end ({:#x})",
            header_end, file_size);
    k.setup_header.assign(file.begin() + kSetupHeaderOffset, file.begin() + header_end);

    k.setup_sects = le8(file, kSetupSects);
    if (k.setup_sects == 0) k.setup_sects = 4;  // historical meaning of 0
    k.kernel_offset = (uint64_t{k.setup_sects} + 1) * 512;
    if (k.kernel_offset >= file_size)
        return failf(
            "truncated bzImage: protected-mode kernel should start at offset {:#x} but the "
            "file has {} bytes",
            k.kernel_offset, file_size);
    k.kernel_size = file_size - k.kernel_offset;

    // syssize counts 16-byte paragraphs of the protected-mode kernel; a file
    // shorter than that was cut off (e.g. an interrupted copy).
    uint64_t syssize_bytes = uint64_t{le32(file, kSyssize)} * 16;
    if (syssize_bytes == 0) return fail("not a bzImage: syssize is 0");
    if (syssize_bytes > k.kernel_size)
        return failf(
            "truncated bzImage: header says the protected-mode kernel has {} bytes, the file "
            "holds {}",
            syssize_bytes, k.kernel_size);

    k.loadflags = le8(file, kLoadflags);
    k.initrd_addr_max = le32(file, kInitrdAddrMax);
    k.kernel_alignment = le32(file, kKernelAlignment);
    k.relocatable = le8(file, kRelocatableKernel) != 0;
    k.cmdline_size = le32(file, kCmdlineSize);
    k.payload_offset = le32(file, kPayloadOffset);
    k.payload_length = le32(file, kPayloadLength);
    k.pref_address = le64(file, kPrefAddress);
    k.init_size = le32(file, kInitSize);
    if (k.init_size == 0) return fail("not a bzImage: init_size is 0");
    // kernel_alignment must be a power of two for the alignment arithmetic.
    if (k.relocatable &&
        (k.kernel_alignment == 0 || (k.kernel_alignment & (k.kernel_alignment - 1)) != 0))
        return failf("not a bzImage: kernel_alignment {:#x} is not a power of two",
                     k.kernel_alignment);
    return k;
}

}  // namespace kvmsandbox::x86
