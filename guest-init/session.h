// CMD's life as seen from PID 1: setting the wall clock from the host's
// (protocol/guest_protocol.h, 4.), starting CMD (identity, stdio or pty, cwd,
// PATH search), then the loop that reaps children, obeys the control port
// and, in tty mode, pumps the terminal between the tty port and the pty.
// The control port's lines come from the host; they are still parsed with
// bounds (line length, numbers in range), like everything else.
#pragma once

#include <sys/types.h>

#include <time.h>

#include <expected>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/unique_fd.h"
#include "guest-init/config.h"
#include "guest-init/exec.h"

namespace kvmsandbox::guest_init {

// CMD's standard streams: the three ports, or a pty slave in tty mode.
struct ChildStdio {
    int in = -1, out = -1, err = -1;
    int pty_slave = -1;
};

struct Spawned {
    pid_t pid = -1;
    // Set when CMD never ran: the child reported why before exiting.
    std::optional<ExecFailure> failure;
};

// Forks CMD. SIGCHLD must be blocked by the caller (it is unblocked in the
// child). Returns once CMD has been exec'd or has failed to be.
std::expected<Spawned, std::string> spawn_command(const GuestConfig& cfg, const ChildStdio& io);

struct Pty {
    UniqueFd master, slave;
};
// A new pty from the devpts at /dev/pts, sized ROWS x COLS.
std::expected<Pty, std::string> open_pty(unsigned short rows, unsigned short cols);

// Splits the control port's bytes into lines; a line longer than kMaxLine is
// not a command of ours and is dropped whole.
class ControlLines {
  public:
    static constexpr size_t kMaxLine = 256;
    // The complete lines in BYTES (with what came before), without '\n'.
    std::vector<std::string> feed(std::string_view bytes);
    // The incomplete line so far.
    const std::string& partial() const { return line_; }

  private:
    std::string line_;
    bool overflow_ = false;
};

// Sets CLOCK_REALTIME: clock_settime in the guest, a fake in tests. Returns
// 0 or an errno value.
using SetClock = std::function<int(const timespec&)>;

// Handles a control line if it is a "time" line: a valid one goes to
// set_clock. False for any other line (a command for someone else).
bool handle_time_line(std::string_view line, const SetClock& set_clock);

// Writes the time request on STATUS_FD, then waits up to timeout_ms for the
// host's "time" line on CONTROL_FD (non-blocking) and sets the clock from it.
// Bytes read on the way that are not that line (a "signal" sent before CMD
// exists, a partial line) are appended to *backlog for supervise. False,
// with the clock left as it was, on a timeout or error.
bool sync_clock(int status_fd, int control_fd, int timeout_ms, const SetClock& set_clock,
                std::string* backlog);

struct SessionFds {
    int signal_fd = -1;   // signalfd for SIGCHLD
    int control = -1;     // the control port (non-blocking), or -1
    int tty_port = -1;    // tty mode: the tty port (non-blocking)
    int pty_master = -1;  // tty mode: the pty master (non-blocking)
    // Control bytes read before supervise (sync_clock's backlog): handled
    // first, as if just read from the port.
    std::string control_backlog;
    // For "time" lines (the host's clock after a resume); empty: ignored.
    SetClock set_clock;
};

// Runs until the main child MAIN exits (reaping every other child on the
// way) and returns its wait status. In tty mode, output read from the pty but
// not yet written to the port stays in *pending_output for finish_session.
int supervise(pid_t main, const SessionFds& fds, std::string* pending_output);

// After the main child is gone: kills (kill(-1, SIGKILL): everything but PID
// 1) and reaps every remaining process, then drain_pty.
void finish_session(const SessionFds& fds, std::string pending_output);

// tty mode, once no process holds the pty slave: writes pending_output and
// what the pty still holds (read until EIO) to the tty port, bounded in time.
void drain_pty(const SessionFds& fds, std::string pending_output);

}  // namespace kvmsandbox::guest_init
