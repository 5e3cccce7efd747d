// What a Machine is built from: the kernel and initrd to boot, the command
// line, the size of the guest, and where its serial console reads and writes.
// Filled by the launcher (app/) from the user's request.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvmsandbox {

struct MachineConfig {
    std::string kernel_path;  // the bzImage
    // Non-empty: the bzImage's own vmlinux, unpacked (boot/kernel_unpack.h);
    // booted instead of the bzImage, which then only supplies the setup header.
    std::string vmlinux_path;
    std::string initrd_path;  // empty: none (or initrd_data)
    // An initramfs built in memory; used when initrd_path is empty.
    std::vector<uint8_t> initrd_data;
    std::string extra_cmdline;  // appended to our defaults
    std::string name;
    unsigned cpus = 1;
    uint64_t mem_bytes = 512ull << 20;
    int console_in = -1;   // serial input source (not owned); -1: none
    int console_out = -1;  // serial output sink (not owned); -1: discard
};

}  // namespace kvmsandbox
