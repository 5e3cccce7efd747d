#include <elf.h>

#include <gtest/gtest.h>

#include <cstring>

#include "boot/guest_init_blob.h"

// The embedded /init must be a static x86-64 executable: the initramfs has no
// dynamic loader or libraries.
TEST(GuestInitBlob, IsAStaticElfExecutable) {
    auto bin = kvmsandbox::guest_init_binary();
    ASSERT_GT(bin.size(), sizeof(Elf64_Ehdr));
    Elf64_Ehdr eh;
    std::memcpy(&eh, bin.data(), sizeof eh);
    ASSERT_EQ(std::memcmp(eh.e_ident, ELFMAG, SELFMAG), 0);
    EXPECT_EQ(eh.e_ident[EI_CLASS], ELFCLASS64);
    EXPECT_EQ(eh.e_machine, EM_X86_64);
    EXPECT_EQ(eh.e_type, ET_EXEC);
    ASSERT_LE(eh.e_phoff + size_t{eh.e_phnum} * sizeof(Elf64_Phdr), bin.size());
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        std::memcpy(&ph, bin.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
        EXPECT_NE(ph.p_type, static_cast<uint32_t>(PT_INTERP));
    }
}
