// `kvmsandbox pause NAME` / `resume NAME`: park and release every vCPU.
#include <fmt/core.h>

#include <memory>

#include "base/log.h"
#include "cli/command.h"
#include "cli/instance.h"

namespace kvmsandbox::cli {

namespace {

int simple_request(const std::vector<std::string>& names, const std::string& cmd,
                   const char* done) {
    int rc = 0;
    for (const auto& name : names) {
        auto r = call_instance(name, cmd);
        if (!r) {
            log::error("{}", r.error().message);
            rc = kExitControlError;
            continue;
        }
        fmt::print("{} {}\n", name, done);
    }
    return rc;
}

void add(CLI::App& app, Dispatch& d, const char* cmd, const char* help, const char* done) {
    auto names = std::make_shared<std::vector<std::string>>();
    auto* sub = app.add_subcommand(cmd, help);
    sub->add_option("names", *names, "Instance names")->required();
    sub->callback([&d, names, cmd, done] {
        d.action = [names, cmd, done] { return simple_request(*names, cmd, done); };
    });
}

}  // namespace

void add_pause_commands(CLI::App& app, Dispatch& d) {
    add(app, d, "pause", "Pause instances (every vCPU stops; the guest clock stops too)", "paused");
    add(app, d, "resume", "Resume paused instances", "resumed");
}

}  // namespace kvmsandbox::cli
