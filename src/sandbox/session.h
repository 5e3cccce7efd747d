// The host side of one sandboxed command: the console ports that carry its
// stdin, stdout, stderr (or one terminal), the control lines we send it
// (signals, window size, the wall clock) and the status line it ends with.
// Trust: every status line comes from the guest; a "time?" request is
// answered once, and at most guest::kMaxTimeAnswers times in a run.
// Threads: the status port's lines arrive under the console's lock, so work
// that sends is posted to the loop.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/event_loop.h"
#include "virtio/console/console.h"
#include "virtio/console/fd_ports.h"

namespace kvmsandbox {

struct SessionStatus {
    int exit_code = 0;
    std::string message;  // for "error" statuses: what to tell the user
};

class SandboxSession {
  public:
    // tty: CMD runs on a terminal whose both directions travel on one port.
    SandboxSession(EventLoop& loop, int in_fd, int out_fd, int err_fd, bool tty);
    ~SandboxSession();

    // The port list for the VirtioConsole, in port order.
    std::vector<ConsolePortSpec> port_specs();
    // Call once the console exists (before the VM runs).
    void attach(VirtioConsole& console);

    // The VM has stopped: output still queued in the guest is to be written
    // out in full, waiting for a slow reader (call before draining).
    void finish_output();

    // Sends "signal N" to CMD's process group.
    void send_signal(int sig);
    void send_winsize(unsigned rows, unsigned cols);
    // Sends "time SEC NSEC" with the host's CLOCK_REALTIME read right before
    // the send: on the guest's request, and after a resume. Loop thread.
    void send_time();
    // How many "time?" requests were answered (or are about to be).
    unsigned time_answers() const { return time_answers_; }

    // The status line, once CMD has ended.
    const std::optional<SessionStatus>& status() const { return status_; }

  private:
    void on_status_line(const std::string& line);

    EventLoop& loop_;
    bool tty_;
    VirtioConsole* console_ = nullptr;
    std::unique_ptr<FdInputPort> input_;
    std::unique_ptr<FdOutputPort> out_;
    std::unique_ptr<FdOutputPort> err_;
    std::unique_ptr<LineInputPort> status_port_;
    std::unique_ptr<LineOutputPort> control_;
    std::optional<SessionStatus> status_;
    unsigned time_answers_ = 0;
};

// Parses "exit N" | "signal N" | "error CODE message".
std::optional<SessionStatus> parse_status_line(const std::string& line);
// Parses guest-init's "phase init=NS cmd=NS" (its clock when it started and
// when CMD had been started); nullopt for anything else.
std::optional<std::pair<uint64_t, uint64_t>> parse_phase_line(const std::string& line);

}  // namespace kvmsandbox
