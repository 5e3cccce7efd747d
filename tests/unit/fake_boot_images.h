// Synthetic kernels for the loader tests: a well-formed bzImage (optionally
// with a compressed payload) and an ELF vmlinux.
#pragma once

#include <elf.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "arch/x86/bzimage.h"

namespace kvmsandbox::testing {

inline void put16(std::vector<uint8_t>& b, size_t off, uint16_t v) {
    b[off] = v & 0xff;
    b[off + 1] = v >> 8;
}
inline void put32(std::vector<uint8_t>& b, size_t off, uint32_t v) {
    for (int i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void put64(std::vector<uint8_t>& b, size_t off, uint64_t v) {
    for (int i = 0; i < 8; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}

// Where make_bzimage puts a payload, from the start of the protected-mode kernel.
inline constexpr uint32_t kFakePayloadOffset = 0x100;

// A minimal well-formed bzImage: setup sectors with a protocol 2.15 header,
// followed by `kernel_bytes` of "protected-mode kernel" (grown to hold
// `payload`, which is placed kFakePayloadOffset into it and named by the
// header's payload fields).
inline std::vector<uint8_t> make_bzimage(uint8_t setup_sects = 4, size_t kernel_bytes = 64 * 1024,
                                         const std::vector<uint8_t>& payload = {}) {
    const size_t setup = (size_t{setup_sects ? setup_sects : 4u} + 1) * 512;
    if (!payload.empty())
        kernel_bytes = std::max(kernel_bytes, kFakePayloadOffset + payload.size());
    kernel_bytes = (kernel_bytes + 15) & ~size_t{15};
    std::vector<uint8_t> f(setup + kernel_bytes, 0);
    f[0x1f1] = setup_sects;
    put32(f, 0x1f4, static_cast<uint32_t>(kernel_bytes / 16));  // syssize
    put16(f, 0x1fe, 0xaa55);
    f[0x200] = 0xeb;
    f[0x201] = 0x6a;  // header ends at 0x26c
    std::memcpy(&f[0x202], "HdrS", 4);
    put16(f, 0x206, 0x020f);
    f[0x211] = 0x01;              // LOADED_HIGH
    put32(f, 0x22c, 0x7fffffff);  // initrd_addr_max
    put32(f, 0x230, 0x200000);    // kernel_alignment
    f[0x234] = 1;                 // relocatable
    put16(f, 0x236, x86::kXlfKernel64 | x86::kXlfCanBeLoadedAbove4G);
    put32(f, 0x238, 2047);       // cmdline_size
    put64(f, 0x258, 0x1000000);  // pref_address
    put32(f, 0x260, 0x2000000);  // init_size
    for (size_t i = setup; i < f.size(); ++i) f[i] = static_cast<uint8_t>(i * 7);
    if (!payload.empty()) {
        put32(f, 0x248, kFakePayloadOffset);
        put32(f, 0x24c, static_cast<uint32_t>(payload.size()));
        std::memcpy(&f[setup + kFakePayloadOffset], payload.data(), payload.size());
    }
    return f;
}

struct FakeSegment {
    uint64_t paddr;
    std::vector<uint8_t> bytes;
    uint64_t mem_size;  // >= bytes.size()
    uint32_t flags = PF_R | PF_X;
};

// An x86-64 ELF executable with one PT_LOAD per segment (data at 4 KiB
// aligned file offsets after the headers) and entry point `entry`.
inline std::vector<uint8_t> make_vmlinux(uint64_t entry, const std::vector<FakeSegment>& segs) {
    std::vector<uint8_t> f(4096, 0);
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = entry;
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = static_cast<uint16_t>(segs.size());
    std::memcpy(f.data(), &eh, sizeof(eh));
    for (size_t i = 0; i < segs.size(); ++i) {
        Elf64_Phdr ph{};
        ph.p_type = PT_LOAD;
        ph.p_flags = segs[i].flags;
        ph.p_offset = f.size();
        ph.p_vaddr = 0xffffffff80000000ull + segs[i].paddr;
        ph.p_paddr = segs[i].paddr;
        ph.p_filesz = segs[i].bytes.size();
        ph.p_memsz = segs[i].mem_size;
        ph.p_align = 4096;
        std::memcpy(f.data() + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr), &ph, sizeof(ph));
        f.insert(f.end(), segs[i].bytes.begin(), segs[i].bytes.end());
        f.resize((f.size() + 4095) & ~size_t{4095}, 0);
    }
    return f;
}

}  // namespace kvmsandbox::testing
