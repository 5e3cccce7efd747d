// Parsing of a Linux x86 bzImage: the real-mode setup sectors followed by the
// protected-mode (compressed) kernel. We only read the setup header (offset
// 0x1f1 onwards, Linux boot protocol) and locate the protected-mode part; we
// never run the real-mode setup code because we enter the kernel at its 64-bit
// entry point.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace kvmsandbox::x86 {

// Offsets in the bzImage file (and, for the header, in the zero page, where
// the header sits at the same offset).
inline constexpr size_t kSetupHeaderOffset = 0x1f1;
// edd_mbr_sig_buffer starts here in boot_params: the setup header never extends past it.
inline constexpr size_t kSetupHeaderMaxEnd = 0x290;
// The header fields we read end with init_size (0x260..0x263); protocol 2.12
// headers end at 0x268, so that is the smallest file we could accept.
inline constexpr size_t kMinHeaderEnd = 0x264;
inline constexpr size_t kMinBzImageSize = 0x268;
// 64-bit entry is this far into the protected-mode kernel (boot protocol 2.12+).
inline constexpr uint64_t kEntry64Offset = 0x200;

// Boot protocol version we need: xloadflags (XLF_KERNEL_64) appeared in 2.12.
inline constexpr uint16_t kMinBootProtocol = 0x020c;
// acpi_rsdp_addr in boot_params is honoured from 2.14 on.
inline constexpr uint16_t kBootProtocolAcpiRsdp = 0x020e;

// xloadflags bits.
inline constexpr uint16_t kXlfKernel64 = 1u << 0;
inline constexpr uint16_t kXlfCanBeLoadedAbove4G = 1u << 1;

struct BzImage {
    // Bytes 0x1f1 .. end of the setup header (0x202 + byte at 0x201), capped
    // at kSetupHeaderMaxEnd. Copied verbatim into the zero page.
    std::vector<uint8_t> setup_header;
    uint16_t protocol = 0;    // e.g. 0x020f for 2.15
    uint8_t setup_sects = 0;  // after the "0 means 4" rule
    uint8_t loadflags = 0;
    uint16_t xloadflags = 0;
    // The protected-mode kernel inside the file.
    uint64_t kernel_offset = 0;  // (setup_sects + 1) * 512
    uint64_t kernel_size = 0;    // bytes to load: everything after the setup sectors
    uint64_t pref_address = 0;
    uint32_t init_size = 0;  // bytes of RAM the kernel needs from its load address on
    uint32_t kernel_alignment = 0;
    bool relocatable = false;
    uint32_t initrd_addr_max = 0;  // highest byte address the initrd may occupy
    uint32_t cmdline_size = 0;     // max command line length, without the NUL
    // The compressed vmlinux inside the protected-mode kernel (protocol 2.08+);
    // offset from the start of the protected-mode kernel. Not checked at parse
    // time: only payload() uses them, and it bounds them.
    uint32_t payload_offset = 0;
    uint32_t payload_length = 0;

    // The protected-mode kernel bytes within `file` (the buffer it was parsed
    // from). Empty if `file` is shorter than at parse time.
    std::span<const uint8_t> kernel(std::span<const uint8_t> file) const {
        if (kernel_offset > file.size() || kernel_size > file.size() - kernel_offset) return {};
        return file.subspan(static_cast<size_t>(kernel_offset), static_cast<size_t>(kernel_size));
    }

    // The compressed payload within `file`; empty if the header's payload
    // fields point outside the protected-mode kernel.
    std::span<const uint8_t> payload(std::span<const uint8_t> file) const {
        auto pm = kernel(file);
        if (payload_length == 0 || payload_offset > pm.size() ||
            payload_length > pm.size() - payload_offset)
            return {};
        return pm.subspan(payload_offset, payload_length);
    }

    // RAM the loaded kernel occupies from its load address on: the larger of
    // its decompression footprint and the bytes we copy.
    uint64_t load_footprint() const {
        return kernel_size > init_size ? kernel_size : uint64_t{init_size};
    }
};

// Validates `file` as a bzImage bootable through the 64-bit boot protocol.
// Errors are one line ("not a bzImage: ...", "truncated bzImage: ...",
// "unsupported bzImage: ...").
Result<BzImage> parse_bzimage(std::span<const uint8_t> file);

// The same checks from the file's first bytes (`head`, at least up to the end
// of the setup header) and its size, for a caller that boots the unpacked
// kernel and needs only the header.
Result<BzImage> parse_bzimage_header(std::span<const uint8_t> head, uint64_t file_size);

}  // namespace kvmsandbox::x86
