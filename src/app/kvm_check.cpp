#include "app/kvm_check.h"

#include <unistd.h>

#include <cstdlib>

#include <fmt/core.h>

#include "kvm/kvm.h"

namespace kvmsandbox::app {

Result<void> check_host_kvm(const std::vector<std::string>& argv) {
    const char* allow = std::getenv("KVMSANDBOX_ALLOW_PVM");
    if (!host_kvm_is_pvm() || (allow && std::string(allow) == "1")) return {};
    std::string cmd;
    for (const auto& a : argv) {
        if (!cmd.empty()) cmd += ' ';
        const bool plain =
            !a.empty() && a.find_first_of(" \t'\"$`\\|&;<>()*?[]#~") == std::string::npos;
        cmd += plain ? a : "'" + a + "'";
    }
    return failf(
        "this host's /dev/kvm is PVM (kvm_pvm), which cannot boot a stock kernel; run it in a "
        "TCG-hosted VM instead: scripts/kvm-in-tcg.sh -- {}",
        cmd);
}

bool kvm_device_present() {
    return ::access(kvm_device_path().c_str(), F_OK) == 0;
}

}  // namespace kvmsandbox::app
