// `kvmsandbox [OPTIONS] -- CMD [ARGS...]`: run a host command in a VM.
#include "base/log.h"
#include "cli/command.h"

namespace kvmsandbox::cli {

void add_sandbox_form(CLI::App& app, Dispatch& d) {
    auto cmd = std::make_shared<std::vector<std::string>>();
    app.add_option("command", *cmd, "Command to run inside the VM (after --)");
    app.callback([&d, cmd] {
        if (cmd->empty() || d.action) return;
        d.action = [cmd] {
            // Say first whether this host can run a VM at all, so the user on a
            // PVM host learns the harness command in one line.
            auto why = kvm_unusable_reason(original_argv());
            if (!why.empty()) {
                log::error("{}", why);
                return kExitOwnError;
            }
            log::error(
                "running a command in the sandbox is not available in this version yet; "
                "use 'kvmsandbox run' to boot a kernel");
            return kExitOwnError;
        };
    });
}

}  // namespace kvmsandbox::cli
