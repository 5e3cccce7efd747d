// `kvmsandbox balloon NAME inflate|deflate SIZE`: take memory from a guest
// started with --balloon, or give it back.
#include <fmt/core.h>

#include <memory>

#include "base/log.h"
#include "base/size_parse.h"
#include "cli/command.h"
#include "cli/format.h"
#include "cli/instance.h"

namespace kvmsandbox::cli {

namespace {

struct BalloonOptions {
    std::string name, op, size;
};

int balloon_cmd(const BalloonOptions& o) {
    auto bytes = parse_size(o.size);
    if (!bytes || *bytes == 0) {
        log::error("balloon: bad size '{}' (e.g. 64M, 1G)", o.size);
        return kExitOwnError;
    }
    auto r = call_instance(
        o.name, "balloon",
        control::Json::object({{"op", o.op}, {"bytes", static_cast<int64_t>(*bytes)}}));
    if (!r) {
        log::error("{}", r.error().message);
        return kExitControlError;
    }
    fmt::print(
        "{}: balloon target {} (the guest holds {} now)\n", o.name,
        format_bytes(static_cast<uint64_t>(control::get_int(*r, "target_bytes").value_or(0))),
        format_bytes(static_cast<uint64_t>(control::get_int(*r, "actual_bytes").value_or(0))));
    return 0;
}

}  // namespace

void add_balloon_command(CLI::App& app, Dispatch& d) {
    auto o = std::make_shared<BalloonOptions>();
    auto* sub = app.add_subcommand(
        "balloon", "Inflate (take memory from the guest) or deflate an instance's balloon");
    sub->add_option("name", o->name, "Instance name (started with --balloon)")->required();
    sub->add_option("op", o->op, "inflate or deflate")
        ->required()
        ->check(CLI::IsMember({"inflate", "deflate"}));
    sub->add_option("size", o->size, "How much, e.g. 64M")->required();
    sub->callback([&d, o] { d.action = [o] { return balloon_cmd(*o); }; });
}

}  // namespace kvmsandbox::cli
