#include "sandbox/session.h"

#include <time.h>

#include <charconv>
#include <csignal>

#include "base/log.h"
#include "base/milestones.h"
#include "protocol/guest_protocol.h"

namespace kvmsandbox {

namespace {

bool parse_int(std::string_view s, int& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::optional<SessionStatus> parse_status_line(const std::string& line) {
    std::string_view l(line);
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.remove_suffix(1);
    auto sp = l.find(' ');
    if (sp == std::string_view::npos) return std::nullopt;
    std::string_view kind = l.substr(0, sp), rest = l.substr(sp + 1);
    int n = 0;
    if (kind == "exit") {
        if (!parse_int(rest, n) || n < 0 || n > 255) return std::nullopt;
        return SessionStatus{n, ""};
    }
    if (kind == "signal") {
        if (!parse_int(rest, n) || n < 1 || n > 64) return std::nullopt;
        return SessionStatus{128 + n, ""};
    }
    if (kind == "error") {
        auto sp2 = rest.find(' ');
        std::string_view code = rest.substr(0, sp2);
        if (!parse_int(code, n) || n < 1 || n > 255) return std::nullopt;
        return SessionStatus{
            n, sp2 == std::string_view::npos ? "" : std::string(rest.substr(sp2 + 1))};
    }
    return std::nullopt;
}

std::optional<std::pair<uint64_t, uint64_t>> parse_phase_line(const std::string& line) {
    std::string_view l(line);
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.remove_suffix(1);
    constexpr std::string_view kInit = "phase init=", kCmd = " cmd=";
    if (!l.starts_with(kInit)) return std::nullopt;
    l.remove_prefix(kInit.size());
    auto sp = l.find(kCmd);
    if (sp == std::string_view::npos) return std::nullopt;
    uint64_t init = 0, cmd = 0;
    std::string_view a = l.substr(0, sp), b = l.substr(sp + kCmd.size());
    auto r1 = std::from_chars(a.data(), a.data() + a.size(), init);
    auto r2 = std::from_chars(b.data(), b.data() + b.size(), cmd);
    if (r1.ec != std::errc() || r1.ptr != a.data() + a.size() || r2.ec != std::errc() ||
        r2.ptr != b.data() + b.size() || a.empty() || b.empty() || cmd < init)
        return std::nullopt;
    return std::pair{init, cmd};
}

SandboxSession::SandboxSession(EventLoop& loop, int in_fd, int out_fd, int err_fd, bool tty)
    : loop_(loop), tty_(tty) {
    input_ = std::make_unique<FdInputPort>(loop, in_fd);
    if (tty) {
        input_->set_output(out_fd);
    } else {
        // Run locally, a command writing to a closed pipe dies of SIGPIPE
        // (`kvmsandbox -- yes | head -1` must end); do the same to CMD.
        // (Posted: this runs under the console's lock, which sending takes.)
        auto sigpipe = [this] { loop_.post([this] { send_signal(SIGPIPE); }); };
        out_ = std::make_unique<FdOutputPort>(loop, out_fd, sigpipe);
        err_ = std::make_unique<FdOutputPort>(loop, err_fd, sigpipe);
    }
    status_port_ =
        std::make_unique<LineInputPort>([this](const std::string& l) { on_status_line(l); });
    control_ = std::make_unique<LineOutputPort>();
}

SandboxSession::~SandboxSession() = default;

std::vector<ConsolePortSpec> SandboxSession::port_specs() {
    std::vector<ConsolePortSpec> v;
    if (tty_) {
        v.push_back({guest::kPortTty, input_.get()});
    } else {
        v.push_back({guest::kPortStdin, input_.get()});
        v.push_back({guest::kPortStdout, out_.get()});
        v.push_back({guest::kPortStderr, err_.get()});
    }
    v.push_back({guest::kPortStatus, status_port_.get()});
    v.push_back({guest::kPortControl, control_.get()});
    return v;
}

void SandboxSession::attach(VirtioConsole& console) {
    console_ = &console;
    const uint32_t base = tty_ ? 1 : 3;
    input_->attach(console, 0);
    if (out_) out_->attach(console, 1);
    if (err_) err_->attach(console, 2);
    control_->attach(console, base + 1);
}

void SandboxSession::finish_output() {
    if (out_) out_->set_blocking();
    if (err_) err_->set_blocking();
}

void SandboxSession::send_signal(int sig) {
    control_->send("signal " + std::to_string(sig) + "\n");
}

void SandboxSession::send_winsize(unsigned rows, unsigned cols) {
    control_->send("winsize " + std::to_string(rows) + " " + std::to_string(cols) + "\n");
}

void SandboxSession::send_time() {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    control_->send(guest::format_time_line({now.tv_sec, now.tv_nsec}));
}

void SandboxSession::on_status_line(const std::string& line) {
    std::string_view l(line);
    if (l.ends_with('\n')) l.remove_suffix(1);
    if (l == guest::kTimeRequest) {
        if (time_answers_ >= guest::kMaxTimeAnswers) {
            log::debug("guest asked for the time too often; ignored");
            return;
        }
        ++time_answers_;
        // Posted: sending takes the console's lock, which we are under.
        loop_.post([this] { send_time(); });
        return;
    }
    if (auto phases = parse_phase_line(line)) {
        milestones::mark(milestones::Milestone::GuestCmdStarted);
        milestones::set_guest_phases(phases->first, phases->second);
        return;
    }
    if (status_) return;  // the first one counts
    milestones::mark(milestones::Milestone::StatusReceived);
    auto st = parse_status_line(line);
    status_ = st ? *st : SessionStatus{125, "malformed status from the guest: " + line};
}

}  // namespace kvmsandbox
