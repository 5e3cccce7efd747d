// `kvmsandbox list [--json]`: the running instances of this user.
#include <fmt/core.h>

#include <memory>

#include "base/log.h"
#include "cli/command.h"
#include "cli/format.h"
#include "cli/instance.h"

namespace kvmsandbox::cli {

namespace {

int list_instances_cmd(bool json) {
    auto dir = control::instance_dir();
    if (!dir) {
        log::error("{}", dir.error().message);
        return kExitOwnError;
    }
    // Dead instances' sockets are removed here, never listed.
    auto names = control::list_instances(*dir);
    if (!names) {
        log::error("{}", names.error().message);
        return kExitOwnError;
    }
    control::Json rows = control::Json::array();
    for (const auto& name : *names) {
        auto info = call_instance(name, "info", control::Json(), std::chrono::seconds(3));
        if (!info) {
            // It died between the two calls, or hangs: say so rather than hide it.
            if (!instance_alive(name)) continue;
            rows.push_back(control::Json::object({{"name", name}, {"state", "unresponsive"}}));
            continue;
        }
        control::Json row = control::Json::object();
        for (const char* k : {"name", "kind", "pid", "state", "cpus", "mem_bytes", "uptime_s"})
            if (const control::Json* v = info->find(k)) row.set(k, *v);
        rows.push_back(std::move(row));
    }
    if (json) {
        fmt::print("{}\n", rows.dump());
        return 0;
    }
    fmt::print("{:<20} {:>8} {:<9} {:<8} {:>4} {:>7} {:>8}\n", "NAME", "PID", "STATE", "KIND",
               "CPUS", "MEMORY", "UPTIME");
    for (const auto& r : *rows.as_array()) {
        fmt::print(
            "{:<20} {:>8} {:<9} {:<8} {:>4} {:>7} {:>8}\n", r.get_string("name").value_or("?"),
            r.get_int("pid") ? fmt::format("{}", *r.get_int("pid")) : "-",
            r.get_string("state").value_or("?"), r.get_string("kind").value_or("-"),
            r.get_int("cpus") ? fmt::format("{}", *r.get_int("cpus")) : "-",
            r.get_int("mem_bytes") ? format_bytes(static_cast<uint64_t>(*r.get_int("mem_bytes")))
                                   : "-",
            r.get_double("uptime_s") ? format_duration(*r.get_double("uptime_s")) : "-");
    }
    return 0;
}

}  // namespace

void add_list_command(CLI::App& app, Dispatch& d) {
    auto json = std::make_shared<bool>(false);
    auto* sub = app.add_subcommand("list", "List the running instances (VMs) of this user");
    sub->add_flag("--json", *json, "Print JSON");
    sub->callback([&d, json] { d.action = [json] { return list_instances_cmd(*json); }; });
}

}  // namespace kvmsandbox::cli
