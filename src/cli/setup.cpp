// `kvmsandbox setup NAME`: a named guest root directory for `run --rootfs`.
#include <fmt/core.h>

#include <memory>

#include "base/log.h"
#include "cli/command.h"
#include "sandbox/rootfs_store.h"

namespace kvmsandbox::cli {

void add_setup_command(CLI::App& app, Dispatch& d) {
    auto name = std::make_shared<std::string>();
    auto* sub = app.add_subcommand(
        "setup", "Create a named guest root directory that 'run --rootfs NAME' boots with");
    sub->add_option("name", *name, "Name of the root")->required();
    sub->callback([&d, name] {
        d.action = [name] {
            auto dir = create_rootfs(*name);
            if (!dir) {
                log::error("{}", dir.error().message);
                return kExitOwnError;
            }
            fmt::print("created {}; start it with: kvmsandbox run --rootfs {}\n", *dir, *name);
            return 0;
        };
    });
}

}  // namespace kvmsandbox::cli
