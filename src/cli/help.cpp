// `kvmsandbox help [COMMAND]`: the help of one command, or of all.
#include <fmt/core.h>

#include <memory>

#include "base/log.h"
#include "cli/command.h"

namespace kvmsandbox::cli {

void add_help_command(CLI::App& app, Dispatch& d) {
    auto topic = std::make_shared<std::string>();
    auto* sub = app.add_subcommand("help", "Show the help of a command");
    sub->add_option("command", *topic, "Command name");
    sub->callback([&app, &d, topic] {
        d.action = [&app, topic] {
            if (topic->empty()) {
                fmt::print("{}", app.help());
                return 0;
            }
            for (const CLI::App* s : app.get_subcommands({})) {
                if (s->get_name() == *topic) {
                    fmt::print("{}", s->help());
                    return 0;
                }
            }
            log::error("help: no command '{}' (see 'kvmsandbox --help')", *topic);
            return kExitOwnError;
        };
    });
}

}  // namespace kvmsandbox::cli
