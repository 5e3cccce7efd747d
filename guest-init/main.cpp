// kvmsandbox's guest PID 1 (see protocol/guest_protocol.h for the contract
// with the host, README.md "Running a command" for what CMD must see). It prepares the
// guest, runs CMD, reports how CMD ended on the status port and powers the
// VM off. It must never exit: the kernel panics when PID 1 does.
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "guest-init/config.h"
#include "guest-init/exec.h"
#include "guest-init/io.h"
#include "guest-init/log.h"
#include "guest-init/net.h"
#include "guest-init/ports.h"
#include "guest-init/rootfs.h"
#include "guest-init/session.h"
#include "protocol/guest_protocol.h"

namespace kvmsandbox::guest_init {
namespace {

constexpr const char* kNewRoot = "/newroot";
constexpr int kPortTimeoutMs = 10000;
constexpr int kShareTimeoutMs = 10000;
constexpr int kStatusTimeoutMs = 5000;

// Not in glibc 2.36's headers for every arch; the kernel value since 6.0.
#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

UniqueFd g_status;  // the status port, once open

[[noreturn]] void power_off() {
    ::sync();
    ::reboot(RB_POWER_OFF);
    // Still here: never return from PID 1.
    for (;;) ::pause();
}

// Init's own failure: "error 125 ..." to the host if it can hear us, and the
// message on the serial console in any case.
[[noreturn]] void fail(const std::string& msg) {
    errorf("%s", msg.c_str());
    if (!g_status) {
        // The status port may exist even though another port is missing.
        auto fds = wait_and_open_ports({{guest::kPortStatus, O_WRONLY | O_NONBLOCK}}, "/sys",
                                       "/dev", 1000);
        if (fds) g_status = std::move((*fds)[0]);
    }
    if (g_status) {
        std::string line = error_status_line(125, msg);
        write_all_deadline(g_status.get(), line.data(), line.size(), kStatusTimeoutMs);
    }
    power_off();
}

template <typename T>
T must(std::expected<T, std::string> r) {
    if (!r) fail(r.error());
    return std::move(*r);
}
void must(std::expected<void, std::string> r) {
    if (!r) fail(r.error());
}

void early_mounts() {
    for (const char* d : {"/dev", "/proc", "/sys"}) ::mkdir(d, 0755);
    // EBUSY: the kernel mounted devtmpfs itself (CONFIG_DEVTMPFS_MOUNT).
    if (::mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") != 0 && errno != EBUSY)
        fail(errno_message("cannot mount devtmpfs on /dev", errno));
    // Descriptors 0-2 of init are /dev/null: the kernel may have left them
    // closed or on the console, and any fd we open must not land on 0-2.
    int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
        for (int fd = 0; fd < 3; ++fd)
            if (null != fd) ::dup2(null, fd);
        if (null > 2) ::close(null);
    }
    log_open_console(false);
    if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
        fail(errno_message("cannot mount /proc", errno));
    if (::mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
        fail(errno_message("cannot mount /sys", errno));
    auto cmdline = read_file("/proc/cmdline");
    log_open_console(cmdline && cmdline_has_flag(*cmdline, "kvmsandbox.debug"));
}

void load_modules(const GuestConfig& cfg) {
    for (const auto& m : cfg.modules) {
        std::string path = std::string(guest::kModuleDir) + "/" + m;
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) fail(errno_message("cannot open module " + path, errno));
        unsigned flags = 0;
        if (m.ends_with(".xz") || m.ends_with(".zst") || m.ends_with(".gz"))
            flags |= MODULE_INIT_COMPRESSED_FILE;
        if (::syscall(SYS_finit_module, fd.get(), "", flags) != 0 && errno != EEXIST)
            fail(errno_message("cannot load module " + m, errno));
        debugf("loaded module %s", m.c_str());
        fd.reset();
        ::unlink(path.c_str());  // the initramfs is RAM: give it back
    }
}

void bring_up_loopback() {
    UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    // The kernel gives lo 127.0.0.1/8 and ::1 itself when it comes up.
    if (!s || ::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) {
        errorf("%s", errno_message("cannot query lo", errno).c_str());
        return;
    }
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0)
        errorf("%s", errno_message("cannot bring up lo", errno).c_str());
}

void setup_network(const GuestConfig& cfg) {
    if (!cfg.net) return;
    auto ifname = must(find_interface("/sys/class/net", kPortTimeoutMs));
    must(configure_interface(ifname, *cfg.net));
    debugf("configured %s", ifname.c_str());
}

void make_symlink(const std::string& path, const std::string& target) {
    auto slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) must(mkdir_p(path.substr(0, slash), 0755));
    if (::symlink(target.c_str(), path.c_str()) == 0) return;
    int err = errno;
    struct stat st {};
    // A skeleton entry of the same name gives way (but never a directory).
    if (err == EEXIST && ::lstat(path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode) &&
        ::unlink(path.c_str()) == 0 && ::symlink(target.c_str(), path.c_str()) == 0)
        return;
    fail(errno_message("cannot create symlink " + path, err));
}

void build_root(const GuestConfig& cfg) {
    ::mkdir(kNewRoot, 0755);
    // A share mounted at "/" (run --rootfs) is the root; else a fresh tmpfs
    // with the skeleton.
    auto root_share = std::find_if(cfg.mounts.begin(), cfg.mounts.end(),
                                   [](const ShareMount& m) { return m.path == "/"; });
    if (root_share != cfg.mounts.end()) {
        MountStep step{MountStep::Kind::Mount,
                       root_share->tag,
                       kNewRoot,
                       "9p",
                       MS_NODEV,
                       ninep_options(false),
                       true};
        must(apply_mount_step(step, kShareTimeoutMs));
    } else {
        if (::mount("tmpfs", kNewRoot, "tmpfs", 0, "mode=0755") != 0)
            fail(errno_message("cannot mount the root tmpfs", errno));
        struct stat st {};
        if (::stat(guest::kRootfsDir, &st) == 0) must(copy_tree(guest::kRootfsDir, kNewRoot));
    }
    for (const auto& l : cfg.symlinks) make_symlink(join_root(kNewRoot, l.path), l.target);
    for (const auto& step : build_mount_plan(cfg, kNewRoot)) {
        must(apply_mount_step(step, kShareTimeoutMs));
        debugf("mounted %s on %s", step.source.c_str(), step.target.c_str());
    }
    // devtmpfs lacks the /proc-based links that shells and tools expect.
    const std::pair<const char*, const char*> links[] = {{"fd", "/proc/self/fd"},
                                                         {"stdin", "/proc/self/fd/0"},
                                                         {"stdout", "/proc/self/fd/1"},
                                                         {"stderr", "/proc/self/fd/2"}};
    for (const auto& [name, target] : links)
        ::symlink(target, join_root(kNewRoot, std::string("/dev/") + name).c_str());
    if (!cfg.home.empty() && !home_is_shared(cfg)) {
        std::string home = join_root(kNewRoot, cfg.home);
        must(mkdir_p(home, 0755));
        if (::chown(home.c_str(), cfg.uid, cfg.gid) != 0)
            fail(errno_message("cannot chown " + cfg.home, errno));
    }
    if (::sethostname(cfg.hostname.data(), cfg.hostname.size()) != 0)
        fail(errno_message("sethostname", errno));
    bring_up_loopback();

    if (::chdir(kNewRoot) != 0 || ::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0 ||
        ::chroot(".") != 0 || ::chdir("/") != 0)
        fail(errno_message("cannot switch to the new root", errno));
    debugf("switched root");
    // After the switch, so that a symlinked /etc/resolv.conf resolves in the
    // guest's own tree. Not fatal: CMD may only use addresses.
    if (cfg.net && cfg.net->dns)
        if (auto r = install_resolv_conf(*cfg.net->dns); !r) errorf("%s", r.error().c_str());
}

// run --disk: the disk holds a whole system. Mount it as the root and hand
// PID 1 to its init, as an initramfs's switch_root does.
[[noreturn]] void boot_disk_root(const GuestConfig& cfg) {
    const BootRoot& br = *cfg.boot_root;
    struct stat st {};
    // devtmpfs creates the node a little after virtio_blk's probe.
    for (int waited = 0; ::stat(br.device.c_str(), &st) != 0; waited += 10) {
        if (waited >= kShareTimeoutMs) fail("the boot disk " + br.device + " did not appear");
        ::usleep(10000);
    }
    ::mkdir(kNewRoot, 0755);
    if (::mount(br.device.c_str(), kNewRoot, br.fstype.c_str(), 0, nullptr) != 0)
        fail(
            errno_message("cannot mount " + br.device + " (" + br.fstype + ") as the root", errno));
    if (::sethostname(cfg.hostname.data(), cfg.hostname.size()) != 0)
        fail(errno_message("sethostname", errno));
    bring_up_loopback();
    setup_network(cfg);
    // The disk's init gets the console as its stdio, as the kernel gives init.
    int console = ::open("/dev/console", O_RDWR | O_NOCTTY);
    if (console >= 0) {
        for (int fd = 0; fd < 3; ++fd) ::dup2(console, fd);
        if (console > 2) ::close(console);
    }
    // The disk's init mounts its own /proc and /sys; /dev comes along when
    // the disk has a place for it, so that its init finds /dev/console.
    if (::stat(join_root(kNewRoot, "/dev").c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        ::mount("/dev", join_root(kNewRoot, "/dev").c_str(), nullptr, MS_MOVE, nullptr);
    ::umount2("/proc", MNT_DETACH);
    ::umount2("/sys", MNT_DETACH);
    if (::chdir(kNewRoot) != 0 || ::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0 ||
        ::chroot(".") != 0 || ::chdir("/") != 0)
        fail(errno_message("cannot switch to the disk's root", errno));
    std::vector<char*> argv;
    for (const auto& a : cfg.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (const auto& e : cfg.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    ::execve(argv[0], argv.data(), envp.data());
    // /proc is gone: errors still reach /dev/console, which we hold open.
    fail(errno_message("cannot start " + cfg.argv[0] + " on the boot disk", errno));
}

[[noreturn]] void run() {
    const unsigned long long started_ns = boottime_ns();
    early_mounts();
    debugf("started");

    auto text = read_file(guest::kConfigPath);
    if (!text) fail(errno_message(std::string("cannot read ") + guest::kConfigPath, text.error()));
    GuestConfig cfg = must(parse_config(*text));
    debugf("config: %zu args, tty=%d, %zu mounts, %zu modules", cfg.argv.size(), cfg.tty ? 1 : 0,
           cfg.mounts.size(), cfg.modules.size());

    load_modules(cfg);
    if (cfg.boot_root) boot_disk_root(cfg);
    // While /sys is still where find_interface looks (build_root moves it).
    setup_network(cfg);

    std::vector<PortRequest> reqs;
    reqs.push_back({guest::kPortStatus, O_WRONLY | O_NONBLOCK});
    reqs.push_back({guest::kPortControl, O_RDONLY | O_NONBLOCK});
    if (cfg.tty) {
        reqs.push_back({guest::kPortTty, O_RDWR | O_NONBLOCK});
    } else {
        // Blocking: CMD uses these descriptions directly.
        reqs.push_back({guest::kPortStdin, O_RDONLY});
        reqs.push_back({guest::kPortStdout, O_WRONLY});
        reqs.push_back({guest::kPortStderr, O_WRONLY});
    }
    std::vector<UniqueFd> ports = must(wait_and_open_ports(reqs, "/sys", "/dev", kPortTimeoutMs));
    g_status = std::move(ports[0]);
    UniqueFd control = std::move(ports[1]);
    debugf("ports open");

    build_root(cfg);

    // SIGCHLD is taken through a signalfd; blocked before fork so that no
    // exit goes unnoticed.
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &chld, nullptr);
    UniqueFd sigfd(::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!sigfd) fail(errno_message("signalfd", errno));

    // The host's wall clock, as late before CMD as we can (the RTC gave
    // whole seconds). Control lines read while waiting stay for supervise.
    const SetClock set_clock = [](const timespec& ts) {
        return ::clock_settime(CLOCK_REALTIME, &ts) == 0 ? 0 : errno;
    };
    std::string control_backlog;
    sync_clock(g_status.get(), control.get(), guest::kTimeWaitMs, set_clock, &control_backlog);

    ChildStdio io;
    Pty pty;
    if (cfg.tty) {
        pty = must(open_pty(cfg.rows, cfg.cols));
        io.pty_slave = pty.slave.get();
    } else {
        io.in = ports[2].get();
        io.out = ports[3].get();
        io.err = ports[4].get();
    }
    Spawned child = must(spawn_command(cfg, io));
    // Only CMD holds its streams now: the host sees them close when CMD and
    // whatever inherited them are gone.
    pty.slave.reset();
    if (!cfg.tty)
        for (size_t i = 2; i < ports.size(); ++i) ports[i].reset();

    SessionFds fds;
    fds.signal_fd = sigfd.get();
    fds.control = control.get();
    fds.control_backlog = std::move(control_backlog);
    fds.set_clock = set_clock;
    if (cfg.tty) {
        fds.tty_port = ports[2].get();
        fds.pty_master = pty.master.get();
    }

    std::string status;
    std::string pending;
    if (child.failure) {
        debugf("command failed to start: %s", child.failure->message.c_str());
        status = error_status_line(child.failure->code, child.failure->message);
    } else {
        debugf("command started, pid %d", child.pid);
        // For the host's timing report (KVMSANDBOX_TIMING=1); the host
        // tells it from a status line by its first word.
        char phase[96];
        int n = std::snprintf(phase, sizeof phase, "phase init=%llu cmd=%llu\n", started_ns,
                              boottime_ns());
        if (n > 0 && static_cast<size_t>(n) < sizeof phase)
            (void)write_all_deadline(g_status.get(), phase, static_cast<size_t>(n), 1000);
        int wstatus = supervise(child.pid, fds, &pending);
        status = status_line_for_wait(wstatus);
    }
    finish_session(fds, std::move(pending));
    ports.clear();
    pty.master.reset();
    debugf("status: %.*s", static_cast<int>(status.size() - 1), status.c_str());
    if (!write_all_deadline(g_status.get(), status.data(), status.size(), kStatusTimeoutMs))
        errorf("could not write the status line");
    g_status.reset();
    power_off();
}

}  // namespace
}  // namespace kvmsandbox::guest_init

int main() {
    if (::getpid() != 1) {
        static const char msg[] = "kvmsandbox-guest-init: must run as PID 1 inside the VM\n";
        kvmsandbox::guest_init::write_all(2, msg, sizeof msg - 1);
        return 125;
    }
    kvmsandbox::guest_init::run();
}
