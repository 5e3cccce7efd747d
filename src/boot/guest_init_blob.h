// The guest's PID 1 (guest-init/), built as a static binary and embedded in
// kvmsandbox at build time, so the host writes it into the initramfs as /init
// without looking for it on disk.
#pragma once

#include <cstdint>
#include <span>

namespace kvmsandbox {

std::span<const uint8_t> guest_init_binary();

}  // namespace kvmsandbox
