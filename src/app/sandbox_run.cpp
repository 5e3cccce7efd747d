#include "app/sandbox_run.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <termios.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <memory>
#include <optional>

#include "base/terminal.h"
#include "boot/boot_cache.h"
#include "boot/cpio_writer.h"
#include "boot/guest_init_blob.h"
#include "boot/initramfs.h"
#include "protocol/guest_config.h"
#include "sandbox/rootfs_store.h"
#include "sandbox/session.h"
#include "virtio/9p/p9_device.h"
#include "virtio/9p/server.h"
#include "virtio/console/console.h"

extern char** environ;

namespace kvmsandbox::app {

namespace {

constexpr int kExitTimeout = 124;
// After a forwarded SIGINT/SIGTERM, how long CMD gets to exit before the VM
// is stopped anyway.
constexpr int kSignalGraceSeconds = 10;

// Who CMD runs as, with which groups: the caller, or --user's identity, since
// with --user the VM process serves the shares as that user (files CMD
// creates are then theirs on both sides).
void set_identity(GuestRunSpec& spec, const hardening::HardeningOptions& h) {
    spec.uid = ::getuid();
    spec.gid = ::getgid();
    int ng = ::getgroups(0, nullptr);
    if (ng > 0) {
        std::vector<gid_t> groups(static_cast<size_t>(ng));
        ng = ::getgroups(ng, groups.data());
        if (ng > 0) spec.groups.assign(groups.begin(), groups.begin() + ng);
    }
    if (h.user) {
        spec.uid = h.user->uid;
        spec.gid = h.user->gid;
        spec.groups = h.user->groups;
    }
}

GuestRunSpec run_spec(const SandboxRequest& req, const std::string& cwd, bool tty) {
    GuestRunSpec spec;
    spec.argv = req.command;
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
    spec.env = filter_environment(env);
    spec.cwd = cwd;
    set_identity(spec, req.vm.hardening);
    spec.tty = tty;
    if (tty) {
        winsize ws{};
        if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
            spec.rows = ws.ws_row;
            spec.cols = ws.ws_col;
        }
    }
    if (const char* home = std::getenv("HOME"); home && *home == '/') spec.home = home;
    spec.net = guest_net_spec(req.vm.devices);
    return spec;
}

Result<SharePlan> plan_sandbox_shares(const SandboxRequest& req, const std::string& cwd) {
    SharePlanInput in;
    in.cwd = cwd;
    if (!req.rootfs.empty()) {
        KS_TRY_ASSIGN(in.guest_root, find_rootfs(req.rootfs));
    }
    in.extra = req.shares;
    return plan_shares(in);
}

// The sandbox's part of the VM: the console carrying CMD's streams, the
// shares, --timeout, signal forwarding, the terminal, and the exit status.
class SandboxWorkload : public Workload {
  public:
    SandboxWorkload(const SandboxRequest& req, SharePlan shares, bool tty)
        : req_(req), shares_(std::move(shares)), tty_(tty) {}

    Result<void> attach_early(Machine& m) override {
        session_.emplace(m.loop(), STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, tty_);
        auto dev = std::make_unique<VirtioConsole>(session_->port_specs());
        console_ = dev.get();
        KS_TRY(m.add_virtio_device(std::move(dev)));
        session_->attach(*console_);
        return {};
    }

    Result<void> attach(Machine& m, WorkerPool& pool) override {
        for (const auto& s : shares_.shares) {
            UniqueFd root(::open(s.host_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
            if (!root) return failf("share {}: {}", s.host_path, std::strerror(errno));
            p9::P9Server::Options popts;
            popts.share_name = s.tag;
            popts.hidden = s.hidden;
            popts.world_readable_only = s.world_readable_only;
            popts.max_msize = 512 * 1024;
            KS_TRY_ASSIGN(auto server, p9::P9Server::create(std::move(root), s.read_only, popts));
            KS_TRY(m.add_virtio_device(std::make_unique<VirtioP9>(s.tag, std::move(server), pool)));
        }
        return {};
    }

    Result<void> before_run(Machine& m) override {
        if (req_.timeout > 0) KS_TRY(arm_timeout(m));
        grace_ = UniqueFd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
        if (grace_)
            (void)m.loop().add(grace_.get(), EPOLLIN, [this, &m](uint32_t) {
                m.stop(StopStatus{StopReason::HostRequest, "", forwarded_});
            });
        m.set_signal_handler([this](int sig) { return on_signal(sig); });
        // A terminal session is raw on our side: keys, Ctrl-C included, reach
        // CMD's terminal, whose line discipline does the rest.
        if (tty_) raw_.emplace(STDIN_FILENO);
        return {};
    }

    // `kvmsandbox stop` asks CMD to end as SIGTERM would; the control service
    // forces the VM off after the grace period the request gives.
    void request_shutdown(Machine&) override { session_->send_signal(SIGTERM); }

    // The paused kvmclock resumed where it stopped: the guest's wall clock
    // lags by the pause until it gets the host's again.
    void after_resume(Machine&) override { session_->send_time(); }

    void after_run() override {
        if (session_) session_->finish_output();
        if (console_) console_->drain_output();
        raw_.reset();  // our own messages need a cooked terminal
    }

    Outcome outcome(const StopStatus& st) override {
        if (const auto& s = session_->status()) return {s->exit_code, s->message};
        if (timed_out_)
            return {kExitTimeout,
                    fmt::format("timed out after {} s; the VM was stopped", req_.timeout)};
        if (st.reason == StopReason::HostRequest && st.signal) return {128 + st.signal, ""};
        if (forwarded_) return {128 + forwarded_, ""};
        if (!st.message.empty()) return {kExitOwnError, st.message};
        return {kExitOwnError,
                "the VM ended before the command reported its status (the guest kernel may have "
                "crashed; --console-log FILE keeps its messages)"};
    }

  private:
    static constexpr int kExitOwnError = 125;

    Result<void> arm_timeout(Machine& m) {
        timer_ = UniqueFd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
        if (!timer_) return fail("timerfd_create failed");
        itimerspec its{};
        its.it_value.tv_sec = static_cast<time_t>(req_.timeout);
        its.it_value.tv_nsec =
            static_cast<long>((req_.timeout - static_cast<double>(its.it_value.tv_sec)) * 1e9);
        ::timerfd_settime(timer_.get(), 0, &its, nullptr);
        return m.loop().add(timer_.get(), EPOLLIN, [this, &m](uint32_t) {
            timed_out_ = true;
            m.stop(StopStatus{StopReason::HostRequest, ""});
        });
    }

    // The first SIGINT/SIGTERM/SIGHUP goes to CMD; the VM is stopped if CMD
    // has not ended after a grace period, or at a second one.
    bool on_signal(int sig) {
        if (sig == SIGWINCH) {
            winsize ws{};
            if (tty_ && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0)
                session_->send_winsize(ws.ws_row, ws.ws_col);
            return true;
        }
        if (forwarded_) return false;  // a second signal: stop now
        forwarded_ = sig;
        session_->send_signal(sig);
        if (grace_) {
            itimerspec its{};
            its.it_value.tv_sec = kSignalGraceSeconds;
            ::timerfd_settime(grace_.get(), 0, &its, nullptr);
        }
        return true;
    }

    const SandboxRequest& req_;
    SharePlan shares_;
    bool tty_;
    std::optional<SandboxSession> session_;
    VirtioConsole* console_ = nullptr;
    UniqueFd timer_, grace_;
    bool timed_out_ = false;
    int forwarded_ = 0;
    std::optional<RawTerminal> raw_;
};

}  // namespace

Result<Outcome> run_sandbox(const SandboxRequest& req) {
    KS_TRY(check_request(req.vm));
    KS_TRY_ASSIGN(const std::string kernel, kernel_for(req.vm));
    std::vector<std::string> extra_modules = device_modules(req.vm.devices);
    if (req.vm.balloon) extra_modules.push_back("virtio_balloon");
    BootCache boot_cache(BootCache::default_dir());
    KS_TRY_ASSIGN(auto boot,
                  prepare_boot_image(boot_cache, guest_init_binary(), kernel, extra_modules));

    std::error_code ec;
    const std::string cwd = std::filesystem::current_path(ec).string();
    if (ec) return fail("cannot read the current directory: " + ec.message());
    KS_TRY_ASSIGN(auto shares, plan_sandbox_shares(req, cwd));

    const bool tty = ::isatty(STDIN_FILENO) && ::isatty(STDOUT_FILENO);
    GuestRunSpec spec = run_spec(req, cwd, tty);
    spec.modules = boot.module_files;
    spec.shares = shares;
    KS_TRY_ASSIGN(auto config, build_config_archive(encode_guest_config(spec)));
    append_cpio_archive(boot.archive, config);

    // Where kernel and init messages go: never CMD's streams.
    UniqueFd console_log;
    int console_fd = req.vm.verbose ? STDERR_FILENO : -1;
    if (!req.console_log.empty()) {
        console_log = UniqueFd(
            ::open(req.console_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!console_log)
            return failf("--console-log {}: {}", req.console_log, std::strerror(errno));
        console_fd = console_log.get();
    }

    MachineConfig cfg;
    cfg.kernel_path = kernel;
    cfg.initrd_data = std::move(boot.archive);
    cfg.extra_cmdline = req.vm.verbose ? "loglevel=7 kvmsandbox.debug" : "quiet loglevel=1";
    if (!req.vm.params.empty()) cfg.extra_cmdline += " " + req.vm.params;
    cfg.console_out = console_fd;
    SandboxWorkload workload(req, std::move(shares), tty);
    return launch(req.vm, std::move(cfg), workload);
}

}  // namespace kvmsandbox::app
