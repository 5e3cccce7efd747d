// `kvmsandbox stat NAME [--json]`: memory, balloon, vCPU exits and device
// counters of a running instance.
#include <fmt/core.h>

#include <memory>

#include "base/log.h"
#include "cli/command.h"
#include "cli/format.h"
#include "cli/instance.h"

namespace kvmsandbox::cli {

namespace {

uint64_t u(const control::Json& j, const char* key) {
    return static_cast<uint64_t>(control::get_int(j, key).value_or(0));
}

int stat_cmd(const std::string& name, bool json) {
    auto r = call_instance(name, "stat");
    if (!r) {
        log::error("{}", r.error().message);
        return kExitControlError;
    }
    const control::Json& s = *r;
    if (json) {
        fmt::print("{}\n", control::dump_json(s));
        return 0;
    }
    fmt::print("{} ({}, pid {}): {}, up {}\n", name, control::get_string(s, "kind").value_or("?"),
               u(s, "pid"), control::get_string(s, "state").value_or("?"),
               format_duration(control::get_double(s, "uptime_s").value_or(0)));
    fmt::print("memory: guest {}, VMM resident {}\n", format_bytes(u(s, "mem_bytes")),
               format_bytes(u(s, "vmm_rss_bytes")));
    if (const control::Json* b = control::get_object(s, "balloon"))
        fmt::print("balloon: target {}, held by the guest {}\n",
                   format_bytes(u(*b, "target_bytes")), format_bytes(u(*b, "actual_bytes")));
    if (const auto* vcpus = control::get_array(s, "vcpus")) {
        for (const auto& v : *vcpus)
            fmt::print("vcpu {}: {} exits (io {}, mmio {}, other {})\n", u(v, "id"), u(v, "exits"),
                       u(v, "io"), u(v, "mmio"), u(v, "other"));
    }
    if (const auto* devices = control::get_array(s, "devices")) {
        for (const auto& d : *devices) {
            std::string line = control::get_string(d, "name").value_or("?") + ":";
            if (const control::Json* c = control::get_object(d, "counters"))
                for (const auto& [k, v] : c->items())
                    line += fmt::format(" {}={}", k, control::as_int(v).value_or(0));
            fmt::print("{}\n", line);
        }
    }
    return 0;
}

}  // namespace

void add_stat_command(CLI::App& app, Dispatch& d) {
    auto name = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    auto* sub = app.add_subcommand("stat", "Show an instance's memory, balloon and counters");
    sub->add_option("name", *name, "Instance name")->required();
    sub->add_flag("--json", *json, "Print JSON");
    sub->callback([&d, name, json] { d.action = [name, json] { return stat_cmd(*name, *json); }; });
}

}  // namespace kvmsandbox::cli
