#include "base/milestones.h"

#include <fmt/core.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace kvmsandbox::milestones {

namespace {

using Clock = std::chrono::steady_clock;

// Static initialisation is as close to the process start as we can get
// without asking the kernel (whose start time has 10 ms granularity).
const Clock::time_point g_start = Clock::now();

int64_t ns_since_start() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - g_start).count();
}

constexpr int64_t kUnset = -1;
std::array<std::atomic<int64_t>, static_cast<size_t>(Milestone::kCount)> g_marks{kUnset, kUnset,
                                                                                 kUnset};
static_assert(static_cast<size_t>(Milestone::kCount) == 3, "one kUnset per milestone");
std::atomic<uint64_t> g_guest_init_ns{0};
std::atomic<uint64_t> g_guest_cmd_ns{0};

}  // namespace

void mark(Milestone m) {
    int64_t expected = kUnset;
    g_marks[static_cast<size_t>(m)].compare_exchange_strong(expected, ns_since_start(),
                                                            std::memory_order_relaxed);
}

std::optional<double> at_ms(Milestone m) {
    int64_t v = g_marks[static_cast<size_t>(m)].load(std::memory_order_relaxed);
    if (v == kUnset) return std::nullopt;
    return static_cast<double>(v) / 1e6;
}

double now_ms() {
    return static_cast<double>(ns_since_start()) / 1e6;
}

void set_guest_phases(uint64_t init_ns, uint64_t cmd_ns) {
    g_guest_init_ns.store(init_ns, std::memory_order_relaxed);
    g_guest_cmd_ns.store(cmd_ns, std::memory_order_relaxed);
}

bool report_requested() {
    const char* v = std::getenv("KVMSANDBOX_TIMING");
    return v != nullptr && std::strcmp(v, "1") == 0;
}

std::optional<std::string> report_line() {
    auto run = at_ms(Milestone::FirstVcpuRun);
    auto started = at_ms(Milestone::GuestCmdStarted);
    auto status = at_ms(Milestone::StatusReceived);
    const uint64_t init_ns = g_guest_init_ns.load(std::memory_order_relaxed);
    const uint64_t cmd_ns = g_guest_cmd_ns.load(std::memory_order_relaxed);
    if (!run || !started || !status || cmd_ns < init_ns) return std::nullopt;
    const double total = now_ms();
    // The guest's clock starts after the kernel has decompressed itself, so
    // the boot is measured on ours: from the first KVM_RUN to the moment
    // guest-init started, which is when its phase line arrived minus the
    // time guest-init spent before sending it.
    const double init_to_cmd = static_cast<double>(cmd_ns - init_ns) / 1e6;
    const double boot = *started - init_to_cmd - *run;
    return fmt::format(
        "timing: vmm-setup {:.1f} ms, kernel-boot {:.1f} ms, init-to-cmd {:.1f} ms, cmd {:.1f} "
        "ms, exit {:.1f} ms, total {:.1f} ms",
        *run, boot, init_to_cmd, *status - *started, total - *status, total);
}

}  // namespace kvmsandbox::milestones
