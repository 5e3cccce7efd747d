#include "control/vm_service.h"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>

#include "base/log.h"
#include "control/protocol.h"
#include "virtio/balloon/balloon.h"

namespace kvmsandbox::control {

VmService::VmService(Machine& machine, InstanceInfo info, VirtioBalloon* balloon,
                     std::function<void()> graceful_stop)
    : machine_(machine),
      info_(std::move(info)),
      balloon_(balloon),
      graceful_stop_(std::move(graceful_stop)) {}

VmService::~VmService() {
    close();
}

Result<void> VmService::listen(const std::string& socket_path) {
    auto server = ControlServer::create(
        machine_.loop(), socket_path,
        ControlServer::SimpleHandler([this](const Json& r) { return handle(r); }));
    if (!server) return std::unexpected(server.error());
    server_ = std::move(*server);
    return {};
}

void VmService::close() {
    server_.reset();
    if (force_timer_) {
        machine_.loop().remove(force_timer_.get());
        force_timer_ = UniqueFd();
    }
}

Json VmService::handle(const Json& request) {
    auto cmd = validate_request(request);
    if (!cmd) return error_response(cmd.error().message);
    if (*cmd == "info") return ok_response(info_fields());
    if (*cmd == "stat") return ok_response(stat());
    if (*cmd == "pause") {
        if (machine_.paused()) return error_response(info_.name + " is already paused");
        if (auto r = machine_.pause(); !r) return error_response(r.error().message);
        return ok_response(info_fields());
    }
    if (*cmd == "resume") {
        if (!machine_.paused()) return error_response(info_.name + " is not paused");
        if (auto r = machine_.resume(); !r) return error_response(r.error().message);
        if (on_resume_) on_resume_();
        return ok_response(info_fields());
    }
    if (*cmd == "debug") {
        const bool nmi = get_bool(request, "nmi").value_or(false);
        auto text = machine_.debug_dump(nmi);
        if (!text) return error_response(text.error().message);
        return ok_response(Json::object({{"text", *text}}));
    }
    if (*cmd == "balloon") return balloon(request);
    if (*cmd == "stop") return stop(request);
    return error_response("unknown request '" + *cmd + "'");
}

Json VmService::info_fields() const {
    const MachineConfig& cfg = machine_.config();
    const MachineStats st = machine_.stats();
    return Json::object({{"name", info_.name},
                         {"kind", info_.kind},
                         {"pid", static_cast<int64_t>(::getpid())},
                         {"state", stopping_   ? "stopping"
                                   : st.paused ? "paused"
                                               : "running"},
                         {"cpus", static_cast<int64_t>(cfg.cpus)},
                         {"mem_bytes", static_cast<int64_t>(cfg.mem_bytes)},
                         {"uptime_s", st.uptime_s}});
}

Json VmService::stat() const {
    const MachineStats st = machine_.stats();
    Json out = info_fields();
    out["vmm_rss_bytes"] = static_cast<int64_t>(st.vmm_rss_bytes);
    if (balloon_) {
        // Ask for fresh guest figures: they arrive for the next `stat`.
        (void)balloon_->request_stats();
        out["balloon"] =
            Json::object({{"target_bytes", static_cast<int64_t>(balloon_->target_bytes())},
                          {"actual_bytes", static_cast<int64_t>(balloon_->actual_bytes())}});
    }
    Json vcpus = Json::array();
    for (size_t i = 0; i < st.vcpus.size(); ++i) {
        const auto& v = st.vcpus[i];
        vcpus.push_back(Json::object({{"id", static_cast<int64_t>(i)},
                                      {"exits", static_cast<int64_t>(v.exits)},
                                      {"io", static_cast<int64_t>(v.io)},
                                      {"mmio", static_cast<int64_t>(v.mmio)},
                                      {"other", static_cast<int64_t>(v.other)}}));
    }
    out["vcpus"] = std::move(vcpus);
    Json devices = Json::array();
    for (const auto& d : st.devices) {
        Json counters = Json::object();
        for (const auto& [k, v] : d.counters) counters[k] = static_cast<int64_t>(v);
        devices.push_back(Json::object({{"name", d.name}, {"counters", std::move(counters)}}));
    }
    out["devices"] = std::move(devices);
    return out;
}

Json VmService::balloon(const Json& request) {
    if (!balloon_)
        return error_response(info_.name + " has no balloon device (start it with --balloon)");
    const auto op = get_string(request, "op");
    const auto bytes = get_int(request, "bytes");
    if (!op || (*op != "inflate" && *op != "deflate"))
        return error_response("balloon: op must be inflate or deflate");
    if (!bytes || *bytes <= 0) return error_response("balloon: bytes must be a positive number");
    const uint64_t cur = balloon_->target_bytes();
    const uint64_t n = static_cast<uint64_t>(*bytes);
    const uint64_t ram = machine_.config().mem_bytes;
    uint64_t want;
    if (*op == "inflate") {
        if (n > ram - std::min(cur, ram))
            return error_response(fmt::format(
                "balloon: cannot inflate by {} MiB: the balloon holds {} MiB of {} MiB of RAM",
                n >> 20, cur >> 20, ram >> 20));
        want = cur + n;
    } else {
        want = n >= cur ? 0 : cur - n;
    }
    const uint64_t set = balloon_->set_target_bytes(want);
    return ok_response(
        Json::object({{"target_bytes", static_cast<int64_t>(set)},
                      {"actual_bytes", static_cast<int64_t>(balloon_->actual_bytes())}}));
}

Json VmService::stop(const Json& request) {
    const bool force = get_bool(request, "force").value_or(false);
    const int64_t grace = get_int(request, "grace_s").value_or(kDefaultStopGraceSeconds);
    if (grace < 0 || grace > kMaxStopGraceSeconds)
        return error_response(
            fmt::format("stop: grace period must be 0..{} seconds", kMaxStopGraceSeconds));
    if (force || grace == 0) {
        machine_.stop(
            StopStatus{StopReason::HostRequest, "stopped by `kvmsandbox stop --force`", 9});
        stopping_ = true;
        return ok_response(Json::object({{"grace_s", 0}}));
    }
    if (!stopping_) {
        if (auto r = arm_force_timer(static_cast<int>(grace)); !r)
            return error_response(r.error().message);
        stopping_ = true;
        if (graceful_stop_) graceful_stop_();
    }
    return ok_response(Json::object({{"grace_s", grace}}));
}

Result<void> VmService::arm_force_timer(int seconds) {
    UniqueFd fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!fd) return fail_errno("timerfd_create");
    itimerspec its{};
    its.it_value.tv_sec = seconds;
    if (::timerfd_settime(fd.get(), 0, &its, nullptr) < 0) return fail_errno("timerfd_settime");
    const int raw = fd.get();
    auto added = machine_.loop().add(raw, EPOLLIN, [this, raw, seconds](uint32_t) {
        uint64_t n;
        [[maybe_unused]] auto r = ::read(raw, &n, sizeof(n));
        log::debug("stop: the guest did not end within {} s; forcing it off", seconds);
        // Reported like a SIGKILL: the guest did not get to end on its own.
        machine_.stop(StopStatus{StopReason::HostRequest,
                                 fmt::format("forced off by `kvmsandbox stop` after {} s", seconds),
                                 9});
    });
    if (!added) return std::unexpected(added.error());
    force_timer_ = std::move(fd);
    return {};
}

}  // namespace kvmsandbox::control
