#include "boot/guest_init_blob.h"

// Defined by the generated guest_init_blob.S (.incbin of the built
// kvmsandbox-guest-init).
extern "C" const uint8_t kvmsandbox_guest_init_start[];
extern "C" const uint8_t kvmsandbox_guest_init_end[];

namespace kvmsandbox {

std::span<const uint8_t> guest_init_binary() {
    return {kvmsandbox_guest_init_start,
            static_cast<size_t>(kvmsandbox_guest_init_end - kvmsandbox_guest_init_start)};
}

}  // namespace kvmsandbox
