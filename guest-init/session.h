// CMD's life as seen from PID 1: starting it (identity, stdio or pty, cwd,
// PATH search), then the loop that reaps children, obeys the control port
// and, in tty mode, pumps the terminal between the tty port and the pty.
#pragma once

#include <sys/types.h>

#include <expected>
#include <optional>
#include <string>

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

struct SessionFds {
    int signal_fd = -1;   // signalfd for SIGCHLD
    int control = -1;     // the control port (non-blocking), or -1
    int tty_port = -1;    // tty mode: the tty port (non-blocking)
    int pty_master = -1;  // tty mode: the pty master (non-blocking)
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
