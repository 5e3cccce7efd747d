// `kvmsandbox stop NAME...|--all [--grace S] [--force]`: end instances, the
// guest's own way first (CMD gets SIGTERM; a plain VM's init is asked to
// power off), forced off after the grace period.
#include <fmt/core.h>

#include <memory>
#include <thread>

#include "base/log.h"
#include "cli/command.h"
#include "cli/instance.h"
#include "control/vm_service.h"

namespace kvmsandbox::cli {

namespace {

struct StopOptions {
    std::vector<std::string> names;
    bool all = false, force = false;
    int grace = control::kDefaultStopGraceSeconds;
};

int stop_cmd(const StopOptions& o) {
    std::vector<std::string> names = o.names;
    if (o.all) {
        auto dir = control::instance_dir();
        if (!dir) {
            log::error("{}", dir.error().message);
            return kExitOwnError;
        }
        auto all = control::list_instances(*dir);
        if (!all) {
            log::error("{}", all.error().message);
            return kExitOwnError;
        }
        names = *all;
    } else if (names.empty()) {
        log::error("stop: name an instance, or use --all (see 'kvmsandbox list')");
        return kExitOwnError;
    }
    int rc = 0;
    std::vector<std::string> waiting;
    for (const auto& name : names) {
        auto r = call_instance(name, "stop",
                               control::Json::object({{"grace_s", o.grace}, {"force", o.force}}));
        if (!r) {
            log::error("{}", r.error().message);
            rc = kExitControlError;
            continue;
        }
        waiting.push_back(name);
    }
    // The VM removes its socket as it exits; wait a little past the grace
    // period for that (the process also flushes the guest's last output).
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(o.force ? 10 : o.grace + 10);
    while (!waiting.empty()) {
        std::erase_if(waiting, [](const std::string& n) { return !instance_alive(n); });
        if (waiting.empty()) break;
        if (std::chrono::steady_clock::now() > deadline) {
            for (const auto& n : waiting) log::error("{} did not stop in time", n);
            return kExitControlError;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return rc;
}

}  // namespace

void add_stop_command(CLI::App& app, Dispatch& d) {
    auto o = std::make_shared<StopOptions>();
    auto* sub = app.add_subcommand("stop", "Stop instances: gracefully, then forced after --grace");
    sub->add_option("names", o->names, "Instance names");
    sub->add_flag("-a,--all", o->all, "Stop every running instance");
    sub->add_option("--grace", o->grace,
                    fmt::format("Seconds the guest gets to end on its own (default {})",
                                control::kDefaultStopGraceSeconds))
        ->check(CLI::Range(0, control::kMaxStopGraceSeconds));
    sub->add_flag("-f,--force", o->force, "Stop at once, without asking the guest");
    sub->callback([&d, o] { d.action = [o] { return stop_cmd(*o); }; });
}

}  // namespace kvmsandbox::cli
