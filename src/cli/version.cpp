#include <fmt/core.h>

#include "cli/command.h"

namespace kvmsandbox::cli {

void add_version_command(CLI::App& app, Dispatch& d) {
    auto* sub = app.add_subcommand("version", "Print the kvmsandbox version");
    sub->callback([&d] {
        d.action = [] {
            fmt::print("kvmsandbox {}\n", KVMSANDBOX_VERSION);
            return 0;
        };
    });
}

}  // namespace kvmsandbox::cli
