#include <unistd.h>

#include <cstdlib>

#include <fmt/core.h>

#include "cli/command.h"
#include "kvm/kvm.h"

namespace kvmsandbox::cli {

std::vector<std::string>& original_argv() {
    static std::vector<std::string> v;
    return v;
}

std::string kvm_unusable_reason(const std::vector<std::string>& argv) {
    const char* allow = std::getenv("KVMSANDBOX_ALLOW_PVM");
    if (!host_kvm_is_pvm() || (allow && std::string(allow) == "1")) return {};
    std::string cmd;
    for (const auto& a : argv) {
        if (!cmd.empty()) cmd += ' ';
        const bool plain =
            !a.empty() && a.find_first_of(" \t'\"$`\\|&;<>()*?[]#~") == std::string::npos;
        cmd += plain ? a : "'" + a + "'";
    }
    return fmt::format(
        "this host's /dev/kvm is PVM (kvm_pvm), which cannot boot a stock kernel; run it in a "
        "TCG-hosted VM instead: scripts/kvm-in-tcg.sh -- {}",
        cmd);
}

bool kvm_reachable(const std::string& unusable_reason) {
    return unusable_reason.empty() && ::access(kvm_device_path().c_str(), F_OK) == 0;
}

}  // namespace kvmsandbox::cli
