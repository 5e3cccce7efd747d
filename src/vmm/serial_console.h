// The serial console's host side: what the guest writes to COM1 goes to an
// output fd, and an input fd (a terminal or pipe) feeds COM1's receive FIFO.
// On a terminal, Ctrl-A x leaves the VM (as in QEMU) and Ctrl-A Ctrl-A sends
// one Ctrl-A. The UART's FIFO is the backpressure on input: more host input is
// read only once the guest has taken what we hold.
//
// Threads: write() runs on the vCPU thread that did the port write; the input
// side runs on the event loop (the UART's rx-drained callback only signals an
// eventfd).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "base/event_loop.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "devices/serial8250.h"

namespace kvmsandbox {

class SerialConsole {
  public:
    // in/out: not owned; -1 for none (output is then dropped). on_escape:
    // the user typed Ctrl-A x.
    SerialConsole(EventLoop& loop, int in_fd, int out_fd, std::function<void()> on_escape)
        : loop_(loop), in_fd_(in_fd), out_fd_(out_fd), on_escape_(std::move(on_escape)) {}

    // Writes guest output to the output fd, waiting for a slow terminal; a
    // reader that went away drops the output but keeps the VM going.
    void write(std::span<const uint8_t> bytes);

    // Starts feeding `uart` from the input fd (on the loop). An input that
    // epoll cannot watch (a regular file) gives the guest no input.
    Result<void> start_input(Serial8250& uart);

  private:
    void on_input(bool tty);
    void feed();

    EventLoop& loop_;
    int in_fd_;
    int out_fd_;
    std::function<void()> on_escape_;
    Serial8250* uart_ = nullptr;
    UniqueFd rx_drained_fd_;
    std::vector<uint8_t> pending_;
    size_t pending_off_ = 0;
    bool in_open_ = false;
    bool saw_escape_ = false;  // Ctrl-A pressed on a terminal console
};

}  // namespace kvmsandbox
