// Puts the guest's boot image into its RAM: the kernel (a bzImage, or its
// unpacked vmlinux entered at startup_64), the initrd (a file read straight
// into guest RAM, or an initramfs built in memory), the ACPI tables and
// boot_params with the command line and e820 map.
//
// Trust boundary: the kernel and initrd are the user's files, parsed by
// arch/x86 with every size and offset checked against guest RAM.
#pragma once

#include <cstdint>

#include "base/guest_memory.h"
#include "base/result.h"
#include "vmm/machine_config.h"

namespace kvmsandbox {

// The smallest guest we boot: a Linux guest needs about this much.
inline constexpr uint64_t kMinGuestMem = 64ull << 20;

// Loads everything `cfg` names into `mem` (which covers cfg.mem_bytes) and
// returns the boot CPU's 64-bit entry point. Moves cfg.initrd_data into guest
// RAM (the config then holds no second copy).
Result<uint64_t> load_guest_image(const GuestMemory& mem, MachineConfig& cfg);

// "512M", "2G": how messages show a memory size.
std::string human_size(uint64_t bytes);

}  // namespace kvmsandbox
