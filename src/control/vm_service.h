// The VM process's side of the control plane: answers `list`, `stop`,
// `pause`, `resume`, `stat`, `debug` and `balloon` for one running Machine,
// on the machine's event loop.
//
// Requests (control/protocol.h framing; every reply has "ok"):
//   info                      name, kind, pid, state, cpus, mem_bytes, uptime_s
//   pause | resume
//   stat                      the above plus vmm_rss_bytes, balloon, vcpus[], devices[]
//   debug {nmi: bool}         text: registers of every vCPU
//   balloon {op: "inflate"|"deflate", bytes: N}   target_bytes
//   stop {grace_s: N, force: bool}                asks the guest to end, forces it after grace_s
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "control/json.h"
#include "control/server.h"
#include "vmm/machine.h"

namespace kvmsandbox {

class VirtioBalloon;

namespace control {

struct InstanceInfo {
    std::string name;
    std::string kind;  // "sandbox" or "run"
};

// The grace period `stop` gives a guest before it is forced off.
inline constexpr int kDefaultStopGraceSeconds = 10;
inline constexpr int kMaxStopGraceSeconds = 3600;

class VmService {
  public:
    // `graceful_stop` asks the guest to end on its own (forward SIGTERM to
    // CMD, press the ACPI power button, ...). `balloon` may be null.
    VmService(Machine& machine, InstanceInfo info, VirtioBalloon* balloon,
              std::function<void()> graceful_stop);
    ~VmService();
    VmService(const VmService&) = delete;
    VmService& operator=(const VmService&) = delete;

    // Listens on `socket_path` (the caller holds the instance claim).
    Result<void> listen(const std::string& socket_path);
    // Stops listening and removes the socket; the destructor does it too.
    void close();
    // Called after each successful `resume`, once the vCPUs run again (the
    // sandbox sends the guest the wall clock its paused kvmclock lost).
    void set_on_resume(std::function<void()> f) { on_resume_ = std::move(f); }

    // One request; public for unit tests. Loop thread.
    Json handle(const Json& request);

  private:
    Json info_fields() const;
    Json stat() const;
    Json stop(const Json& request);
    Json balloon(const Json& request);
    Result<void> arm_force_timer(int seconds);

    Machine& machine_;
    InstanceInfo info_;
    VirtioBalloon* balloon_;
    std::function<void()> graceful_stop_;
    std::function<void()> on_resume_;
    std::unique_ptr<ControlServer> server_;
    UniqueFd force_timer_;
    bool stopping_ = false;
};

}  // namespace control
}  // namespace kvmsandbox
