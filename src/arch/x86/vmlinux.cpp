#include "arch/x86/vmlinux.h"

#include <elf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kvmsandbox::x86 {

namespace {

// A kernel has a handful of PT_LOAD segments (5 for Debian 6.1); anything
// far beyond that is not a kernel.
constexpr unsigned kMaxProgramHeaders = 64;

template <typename T>
T load_struct(std::span<const uint8_t> b, size_t off) {
    T v{};
    std::memcpy(&v, b.data() + off, sizeof(T));
    return v;
}

}  // namespace

Result<Vmlinux> parse_vmlinux(std::span<const uint8_t> head, uint64_t file_size) {
    if (head.size() < sizeof(Elf64_Ehdr) || file_size < head.size())
        return fail("not a vmlinux: too short for an ELF header");
    auto eh = load_struct<Elf64_Ehdr>(head, 0);
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return fail("not a vmlinux: no ELF magic");
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
        return fail("not a vmlinux: not a 64-bit little-endian ELF file");
    if (eh.e_machine != EM_X86_64) return fail("not a vmlinux: not an x86-64 ELF file");
    if (eh.e_type != ET_EXEC) return fail("not a vmlinux: not an ELF executable");
    if (eh.e_phentsize != sizeof(Elf64_Phdr))
        return failf("not a vmlinux: program header size {} (expected {})", eh.e_phentsize,
                     sizeof(Elf64_Phdr));
    if (eh.e_phnum == 0 || eh.e_phnum > kMaxProgramHeaders)
        return failf("not a vmlinux: {} program headers", eh.e_phnum);
    const uint64_t ph_bytes = uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
    if (eh.e_phoff > head.size() || ph_bytes > head.size() - eh.e_phoff)
        return fail("not a vmlinux: program headers are not at the start of the file");

    Vmlinux k;
    k.entry = eh.e_entry;
    k.load_start = UINT64_MAX;
    bool entry_ok = false;
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        auto ph = load_struct<Elf64_Phdr>(head, eh.e_phoff + size_t{i} * sizeof(Elf64_Phdr));
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
        if (ph.p_filesz > ph.p_memsz)
            return failf("not a vmlinux: segment {} has more file bytes than memory", i);
        if (ph.p_offset > file_size || ph.p_filesz > file_size - ph.p_offset)
            return failf("not a vmlinux: segment {} extends past the end of the file", i);
        if (ph.p_paddr + ph.p_memsz < ph.p_paddr)
            return failf("not a vmlinux: segment {} wraps around the address space", i);
        k.segments.push_back({ph.p_offset, ph.p_paddr, ph.p_filesz, ph.p_memsz});
        k.load_start = std::min(k.load_start, ph.p_paddr);
        k.load_end = std::max(k.load_end, ph.p_paddr + ph.p_memsz);
        if ((ph.p_flags & PF_X) && k.entry >= ph.p_paddr && k.entry - ph.p_paddr < ph.p_filesz)
            entry_ok = true;
    }
    if (k.segments.empty()) return fail("not a vmlinux: no loadable segment");
    if (!entry_ok)
        return failf("not a vmlinux: entry point {:#x} is not in an executable segment", k.entry);
    // Segments must not overlap: one would silently overwrite the other.
    auto segs = k.segments;
    std::sort(segs.begin(), segs.end(),
              [](const auto& a, const auto& b) { return a.paddr < b.paddr; });
    for (size_t i = 1; i < segs.size(); ++i)
        if (segs[i].paddr < segs[i - 1].paddr + segs[i - 1].mem_size)
            return fail("not a vmlinux: loadable segments overlap");
    return k;
}

Result<void> load_vmlinux(const GuestMemory& mem, const Vmlinux& k, int fd,
                          uint64_t lowest_allowed) {
    for (const auto& s : k.segments) {
        if (s.paddr < lowest_allowed)
            return failf("kernel segment at {:#x} is below {:#x}, where the boot data lives",
                         s.paddr, lowest_allowed);
        auto dst = mem.span(s.paddr, s.mem_size);
        if (!dst)
            return failf("kernel needs {:#x} bytes of RAM at {:#x}, beyond guest memory",
                         s.mem_size, s.paddr);
        // Straight from the page cache into guest RAM: no buffer in between.
        uint64_t done = 0;
        while (done < s.file_size) {
            ssize_t n = ::pread(fd, dst->data() + done, s.file_size - done,
                                static_cast<off_t>(s.file_offset + done));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return fail_errno("reading the kernel");
            if (n == 0) return fail("the kernel file shrank while it was read");
            done += static_cast<uint64_t>(n);
        }
        std::memset(dst->data() + s.file_size, 0, s.mem_size - s.file_size);
    }
    return {};
}

}  // namespace kvmsandbox::x86
