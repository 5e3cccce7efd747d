// `kvmsandbox [OPTIONS] -- CMD [ARGS...]`: run a host command in a VM and
// hand back its streams and exit status as if it had run here.
#include <fcntl.h>
#include <grp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <termios.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <memory>
#include <optional>

#include "base/log.h"
#include "base/size_parse.h"
#include "base/terminal.h"
#include "base/worker_pool.h"
#include "cli/command.h"
#include "cli/devices.h"
#include "cli/instance.h"
#include "cli/sandbox.h"
#include "control/vm_service.h"
#include "virtio/9p/server.h"
#include "boot/boot_cache.h"
#include "boot/cpio_writer.h"
#include "protocol/guest_config.h"
#include "boot/guest_init_blob.h"
#include "hardening/hardening.h"
#include "boot/initramfs.h"
#include "boot/kernel_check.h"
#include "boot/kernel_locator.h"
#include "boot/kernel_unpack.h"
#include "sandbox/rootfs_store.h"
#include "sandbox/session.h"
#include "sandbox/share_plan.h"
#include "virtio/balloon/balloon.h"
#include "virtio/console/console.h"
#include "virtio/9p/p9_device.h"
#include "vmm/machine.h"

extern char** environ;

namespace kvmsandbox::cli {

namespace {

constexpr int kExitTimeout = 124;
// After a forwarded SIGINT/SIGTERM, how long CMD gets to exit before the VM
// is stopped anyway.
constexpr int kSignalGraceSeconds = 10;

int own_error(const std::string& msg) {
    log::error("{}", msg);
    return kExitOwnError;
}

void raise_fd_limit() {
    // Each open 9p fid may hold host fds; the default soft limit of 1024
    // would cap a guest's open files far below what builds use.
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
}

}  // namespace

int run_sandbox(const SandboxOptions& o) {
    log::verbose_flag() = o.verbose;
    // What the user typed is checked first (Machine::create checks --mem
    // and --cpus before KVM), so a typo is named as such on any host.
    auto devices = plan_devices(o.devices);
    if (!devices) return own_error(devices.error().message);
    auto hardening = plan_hardening(o.hardening);
    if (!hardening) return own_error(hardening.error().message);

    auto mem = parse_size(o.mem);
    if (!mem) return own_error("--mem: " + mem.error().message);

    std::string kernel = o.kernel;
    if (kernel.empty()) {
        auto k = find_default_kernel(host_kernel_search());
        if (!k) return own_error(k.error().message);
        kernel = *k;
    }
    std::vector<std::string> extra_modules = device_modules(*devices);
    if (o.balloon) extra_modules.push_back("virtio_balloon");
    BootCache boot_cache(BootCache::default_dir());
    auto boot = prepare_boot_image(boot_cache, guest_init_binary(), kernel, extra_modules);
    if (!boot) return own_error(boot.error().message);
    // The name is taken before anything slow, so a clash is reported at once.
    auto claim = claim_instance_name(o.name);
    if (!claim) return own_error(claim.error().message);

    std::error_code ec;
    const std::string cwd = std::filesystem::current_path(ec).string();
    if (ec) return own_error("cannot read the current directory: " + ec.message());
    SharePlanInput share_in;
    share_in.cwd = cwd;
    if (!o.rootfs.empty()) {
        auto dir = find_rootfs(o.rootfs);
        if (!dir) return own_error(dir.error().message);
        share_in.guest_root = *dir;
    }
    for (const auto& s : o.shares) {
        auto sh = parse_share_option(s);
        if (!sh) return own_error(sh.error().message);
        share_in.extra.push_back(*sh);
    }
    auto shares = plan_shares(share_in);
    if (!shares) return own_error(shares.error().message);

    const bool tty = ::isatty(STDIN_FILENO) && ::isatty(STDOUT_FILENO);
    GuestRunSpec spec;
    spec.argv = o.command;
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
    spec.env = filter_environment(env);
    spec.cwd = cwd;
    spec.uid = ::getuid();
    spec.gid = ::getgid();
    int ng = ::getgroups(0, nullptr);
    if (ng > 0) {
        std::vector<gid_t> groups(static_cast<size_t>(ng));
        ng = ::getgroups(ng, groups.data());
        if (ng > 0) spec.groups.assign(groups.begin(), groups.begin() + ng);
    }
    // With --user the VM process serves the shares as that user, so the
    // command runs as that user too: files it creates are theirs on both sides.
    if (hardening->user) {
        spec.uid = hardening->user->uid;
        spec.gid = hardening->user->gid;
        spec.groups = hardening->user->groups;
    }
    spec.tty = tty;
    if (tty) {
        winsize ws{};
        if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
            spec.rows = ws.ws_row;
            spec.cols = ws.ws_col;
        }
    }
    if (const char* home = std::getenv("HOME"); home && *home == '/') spec.home = home;
    spec.modules = boot->module_files;
    spec.shares = *shares;
    spec.net = guest_net_spec(*devices);
    auto config = build_config_archive(encode_guest_config(spec));
    if (!config) return own_error(config.error().message);
    append_cpio_archive(boot->archive, *config);

    // Where kernel and init messages go: never CMD's streams.
    UniqueFd console_log;
    int console_fd = -1;
    if (!o.console_log.empty()) {
        console_log =
            UniqueFd(::open(o.console_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!console_log)
            return own_error(
                fmt::format("--console-log {}: {}", o.console_log, std::strerror(errno)));
        console_fd = console_log.get();
    } else if (o.verbose) {
        console_fd = STDERR_FILENO;
    }

    MachineConfig cfg;
    cfg.kernel_path = kernel;
    cfg.initrd_data = std::move(boot->archive);
    cfg.extra_cmdline = o.verbose ? "loglevel=7 kvmsandbox.debug" : "quiet loglevel=1";
    if (!o.params.empty()) cfg.extra_cmdline += " " + o.params;
    cfg.cpus = o.cpus;
    cfg.mem_bytes = *mem;
    cfg.console_in = -1;
    cfg.console_out = console_fd;
    cfg.kvm_unusable_reason = kvm_unusable_reason(original_argv());
    if (kvm_reachable(cfg.kvm_unusable_reason)) cfg.vmlinux_path = unpacked_kernel_for(kernel);
    raise_fd_limit();

    // Before the first helper thread (the worker pool) starts.
    if (auto r = sandbox::arm_hardening(*hardening); !r) return own_error(r.error().message);
    auto machine = Machine::create(cfg);
    if (!machine) return own_error(machine.error().message);
    Machine& m = **machine;

    SandboxSession session(m.loop(), STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, tty);
    auto console_dev = std::make_unique<VirtioConsole>(session.port_specs());
    VirtioConsole* console = console_dev.get();
    if (auto r = m.add_virtio_device(std::move(console_dev)); !r)
        return own_error(r.error().message);
    session.attach(*console);

    WorkerPool pool(4);
    sandbox::HardeningGate hardening_gate;  // right after the pool: see its header
    for (const auto& s : shares->shares) {
        UniqueFd root(::open(s.host_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!root) return own_error(fmt::format("share {}: {}", s.host_path, std::strerror(errno)));
        p9::P9Server::Options popts;
        popts.share_name = s.tag;
        popts.hidden = s.hidden;
        popts.max_msize = 512 * 1024;
        auto server = p9::P9Server::create(std::move(root), s.read_only, popts);
        if (!server) return own_error(server.error().message);
        auto dev = std::make_unique<VirtioP9>(s.tag, std::move(*server), pool);
        if (auto r = m.add_virtio_device(std::move(dev)); !r) return own_error(r.error().message);
    }

    if (auto r = attach_devices(m, *devices, pool); !r) return own_error(r.error().message);

    VirtioBalloon* balloon = nullptr;
    if (o.balloon) {
        auto dev = std::make_unique<VirtioBalloon>(m.memory(), *mem);
        balloon = dev.get();
        if (auto r = m.add_virtio_device(std::move(dev)); !r) return own_error(r.error().message);
    }

    // --timeout: a timer on the loop.
    bool timed_out = false;
    UniqueFd timer;
    if (o.timeout > 0) {
        timer = UniqueFd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
        if (!timer) return own_error("timerfd_create failed");
        itimerspec its{};
        its.it_value.tv_sec = static_cast<time_t>(o.timeout);
        its.it_value.tv_nsec =
            static_cast<long>((o.timeout - static_cast<double>(its.it_value.tv_sec)) * 1e9);
        ::timerfd_settime(timer.get(), 0, &its, nullptr);
        (void)m.loop().add(timer.get(), EPOLLIN, [&](uint32_t) {
            timed_out = true;
            m.stop(StopStatus{StopReason::HostRequest, ""});
        });
    }

    // Signals: the first SIGINT/SIGTERM/SIGHUP goes to CMD; the VM is
    // stopped if CMD has not ended after a grace period or on a second one.
    int forwarded = 0;
    UniqueFd grace(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (grace)
        (void)m.loop().add(grace.get(), EPOLLIN, [&](uint32_t) {
            m.stop(StopStatus{StopReason::HostRequest, "", forwarded});
        });
    m.set_signal_handler([&](int sig) {
        if (sig == SIGWINCH) {
            winsize ws{};
            if (tty && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0)
                session.send_winsize(ws.ws_row, ws.ws_col);
            return true;
        }
        if (forwarded) return false;  // a second signal: stop now
        forwarded = sig;
        session.send_signal(sig);
        if (grace) {
            itimerspec its{};
            its.it_value.tv_sec = kSignalGraceSeconds;
            ::timerfd_settime(grace.get(), 0, &its, nullptr);
        }
        return true;
    });

    // `kvmsandbox stop` asks CMD to end as SIGTERM would; the service forces
    // the VM off after the grace period the request gives.
    control::VmService service(m, {claim->name(), o.kind}, balloon,
                               [&] { session.send_signal(SIGTERM); });
    if (auto r = service.listen(claim->socket_path()); !r) return own_error(r.error().message);

    // A terminal session is raw on our side: keys, Ctrl-C included, reach
    // CMD's terminal, whose line discipline does the rest. Restored on return.
    std::optional<RawTerminal> raw;
    if (tty) raw.emplace(STDIN_FILENO);
    // Everything is open: from here every thread drops its privileges and
    // loads its filter before it handles anything from the guest.
    if (auto r = hardening_gate.commit(); !r) return own_error(r.error().message);
    auto st = m.run();
    service.close();  // the socket goes while the name is still ours
    session.finish_output();
    console->drain_output();
    raw.reset();  // our own messages below need a cooked terminal
    if (!st) return own_error(st.error().message);

    if (const auto& s = session.status()) {
        if (!s->message.empty()) log::error("{}", s->message);
        return s->exit_code;
    }
    if (timed_out) {
        log::error("timed out after {} s; the VM was stopped", o.timeout);
        return kExitTimeout;
    }
    if (st->reason == StopReason::HostRequest && st->signal) return 128 + st->signal;
    if (forwarded) return 128 + forwarded;
    if (!st->message.empty()) return own_error(st->message);
    return own_error(
        "the VM ended before the command reported its status (the guest kernel may have "
        "crashed; --console-log FILE keeps its messages)");
}

void add_sandbox_form(CLI::App& app, Dispatch& d) {
    auto o = std::make_shared<SandboxOptions>();
    app.add_option("command", o->command, "Command to run inside the VM (after --)");
    app.add_option("-k,--kernel", o->kernel, "Guest kernel; default: the host's from /boot")
        ->check(CLI::ExistingFile);
    app.add_option("-m,--mem", o->mem, "Guest memory (default 1G)");
    app.add_option("-c,--cpus", o->cpus, "vCPUs (default 2)")->check(CLI::Range(1u, 254u));
    app.add_option("--timeout", o->timeout, "Stop the VM after S seconds (exit 124)")
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
                double s = 0;
                try {
                    s = std::stod(v);
                } catch (const std::exception&) {
                    return "'" + v + "' is not a number of seconds";
                }
                return s > 0 ? "" : "'" + v + "' must be more than 0 seconds";
            },
            "SECONDS", "seconds"));
    // One value per occurrence (also --disk, --publish): a list option would
    // swallow "--" and hand the command's own options to us.
    app.add_option("--share", o->shares, "Share HOST[:GUEST][:ro] with the guest (repeatable)")
        ->allow_extra_args(false);
    add_device_options(app, o->devices, "none");
    add_hardening_options(app, o->hardening);
    app.add_option("--console-log", o->console_log, "Keep kernel and init messages in FILE");
    app.add_option("-p,--params", o->params, "Extra kernel command line parameters");
    app.add_option("-n,--name", o->name,
                   "Instance name for list/stop/stat... (default: generated)");
    app.add_flag("--balloon", o->balloon, "Add a virtio-balloon device (kvmsandbox balloon)");
    app.add_flag("-v,--verbose", o->verbose, "Show kernel and init messages on stderr");
    app.callback([&d, o] {
        if (o->command.empty() || d.action) return;
        d.action = [o] { return run_sandbox(*o); };
    });
}

}  // namespace kvmsandbox::cli
