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
    return static_cast<uint64_t>(j.get_int(key).value_or(0));
}

int stat_cmd(const std::string& name, bool json) {
    auto r = call_instance(name, "stat");
    if (!r) {
        log::error("{}", r.error().message);
        return kExitControlError;
    }
    const control::Json& s = *r;
    if (json) {
        fmt::print("{}\n", s.dump());
        return 0;
    }
    fmt::print("{} ({}, pid {}): {}, up {}\n", name, s.get_string("kind").value_or("?"),
               u(s, "pid"), s.get_string("state").value_or("?"),
               format_duration(s.get_double("uptime_s").value_or(0)));
    fmt::print("memory: guest {}, VMM resident {}\n", format_bytes(u(s, "mem_bytes")),
               format_bytes(u(s, "vmm_rss_bytes")));
    if (const control::Json* b = s.get_object("balloon"))
        fmt::print("balloon: target {}, held by the guest {}\n",
                   format_bytes(u(*b, "target_bytes")), format_bytes(u(*b, "actual_bytes")));
    if (const auto* vcpus = s.get_array("vcpus")) {
        for (const auto& v : *vcpus)
            fmt::print("vcpu {}: {} exits (io {}, mmio {}, other {})\n", u(v, "id"), u(v, "exits"),
                       u(v, "io"), u(v, "mmio"), u(v, "other"));
    }
    if (const auto* devices = s.get_array("devices")) {
        for (const auto& d : *devices) {
            std::string line = d.get_string("name").value_or("?") + ":";
            if (const control::Json* c = d.get_object("counters"))
                for (const auto& [k, v] : *c->as_object())
                    line += fmt::format(" {}={}", k, v.as_int().value_or(0));
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
