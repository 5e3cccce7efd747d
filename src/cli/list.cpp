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
            if (const control::Json* v = control::find_member(*info, k)) row[k] = *v;
        rows.push_back(std::move(row));
    }
    if (json) {
        fmt::print("{}\n", control::dump_json(rows));
        return 0;
    }
    fmt::print("{:<20} {:>8} {:<9} {:<8} {:>4} {:>7} {:>8}\n", "NAME", "PID", "STATE", "KIND",
               "CPUS", "MEMORY", "UPTIME");
    for (const auto& r : rows) {
        fmt::print(
            "{:<20} {:>8} {:<9} {:<8} {:>4} {:>7} {:>8}\n",
            control::get_string(r, "name").value_or("?"),
            control::get_int(r, "pid") ? fmt::format("{}", *control::get_int(r, "pid")) : "-",
            control::get_string(r, "state").value_or("?"),
            control::get_string(r, "kind").value_or("-"),
            control::get_int(r, "cpus") ? fmt::format("{}", *control::get_int(r, "cpus")) : "-",
            control::get_int(r, "mem_bytes")
                ? format_bytes(static_cast<uint64_t>(*control::get_int(r, "mem_bytes")))
                : "-",
            control::get_double(r, "uptime_s")
                ? format_duration(*control::get_double(r, "uptime_s"))
                : "-");
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
