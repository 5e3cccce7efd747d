// Why a VM stopped, and what the CLI makes of it.
#pragma once

#include <string>

namespace kvmsandbox {

enum class StopReason {
    None,
    Poweroff,       // ACPI S5 from the guest
    Reset,          // guest reboot (i8042 reset line, ACPI reset)
    TripleFault,    // KVM_EXIT_SHUTDOWN: the guest crashed the CPU
    InternalError,  // KVM could not run the guest (emulation failure, entry failure)
    HostRequest,    // the user or a signal asked us to stop
    HostError,      // our own failure while the VM ran
};

struct StopStatus {
    StopReason reason = StopReason::None;
    std::string message;  // one line for the user, empty when the stop is normal
    int signal = 0;       // HostRequest: the signal that asked us to stop, if any
};

}  // namespace kvmsandbox
