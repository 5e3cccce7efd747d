// `kvmsandbox debug NAME [--nmi]`: every vCPU's registers, as lkvm debug.
#include <fmt/core.h>

#include <memory>

#include "base/log.h"
#include "cli/command.h"
#include "cli/instance.h"

namespace kvmsandbox::cli {

void add_debug_command(CLI::App& app, Dispatch& d) {
    auto name = std::make_shared<std::string>();
    auto nmi = std::make_shared<bool>(false);
    auto* sub = app.add_subcommand("debug", "Print the registers of an instance's vCPUs");
    sub->add_option("name", *name, "Instance name")->required();
    sub->add_flag("--nmi", *nmi,
                  "Also send an NMI to each vCPU (the guest kernel logs it on its console)");
    sub->callback([&d, name, nmi] {
        d.action = [name, nmi] {
            auto r = call_instance(*name, "debug", control::Json::object({{"nmi", *nmi}}));
            if (!r) {
                log::error("{}", r.error().message);
                return kExitControlError;
            }
            fmt::print("{}", control::get_string(*r, "text").value_or(""));
            return 0;
        };
    });
}

}  // namespace kvmsandbox::cli
