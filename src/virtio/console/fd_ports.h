// Console port backends that connect a virtio-console port to the host: a
// host fd feeding a port (FdInputPort), a port written to a host fd
// (FdOutputPort), and short text lines in either direction (LineInputPort,
// LineOutputPort). The sandbox session builds CMD's streams from these.
//
// Trust boundary: the bytes come from the guest and are only copied to a
// host fd or split into lines (capped, floods dropped); nothing here
// interprets them. Threads: the ConsolePortBackend callbacks run on the
// thread that processes the console's queues (the loop or a vCPU) under the
// console's lock; whatever must change the event loop is posted to it.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <string>

#include "base/event_loop.h"
#include "virtio/console/console.h"

struct iovec;

namespace kvmsandbox {

// Host fd -> guest port. Pollable fds (pipes, terminals, sockets) are read
// once per readiness event, so a read never blocks the loop; regular files
// (which epoll refuses) are read whenever the guest has buffers.
class FdInputPort : public ConsolePortBackend {
  public:
    FdInputPort(EventLoop& loop, int fd) : loop_(loop), fd_(fd) {}
    ~FdInputPort() override;
    void attach(VirtioConsole& c, uint32_t port);
    void on_guest_output(std::span<const std::span<uint8_t>> data) override;
    void on_guest_open(bool open) override;
    void on_rx_space() override;
    // A terminal port carries CMD's output too: closing it at the end of our
    // input would block CMD's writes, so a terminal's end of input only stops
    // the reading.
    void set_output(int fd) {
        out_fd_ = fd;
        close_on_eof_ = false;
    }

  private:
    void finish();
    void pump();
    size_t read_once();
    void on_readable(uint32_t ev);

    EventLoop& loop_;
    int fd_;
    int out_fd_ = -1;
    VirtioConsole* console_ = nullptr;
    uint32_t port_ = 0;
    bool watching_ = false;
    bool guest_open_ = false;
    bool eof_ = false;
    bool close_on_eof_ = true;
};

// Guest port -> host fd. Never waits for a slow reader while the VM runs:
// what our reader has no room for stays in the guest's queue (CMD's writes
// block in the guest, as on a full pipe) and the port resumes when the fd is
// writable, so the loop keeps serving signals, timers, the control socket and
// the other devices meanwhile. Host memory holds none of the backlog.
class FdOutputPort : public ConsolePortBackend {
  public:
    // on_broken: our reader went away (EPIPE).
    FdOutputPort(EventLoop& loop, int fd, std::function<void()> on_broken);
    ~FdOutputPort() override;
    void attach(VirtioConsole& c, uint32_t port) {
        console_ = &c;
        port_ = port;
    }
    // The VM has stopped: from now on wait for the reader, so that what the
    // guest wrote is all delivered before we exit.
    void set_blocking() { blocking_ = true; }

    void on_guest_output(std::span<const std::span<uint8_t>> data) override {
        (void)take_guest_output(data);
    }
    size_t take_guest_output(std::span<const std::span<uint8_t>> data) override;

  private:
    static constexpr int kMaxIov = 64;
    ssize_t write_some(const iovec* iov, int cnt);
    bool arm_writable();

    EventLoop& loop_;
    int fd_;
    std::function<void()> on_broken_;
    VirtioConsole* console_ = nullptr;
    uint32_t port_ = 0;
    bool pollable_ = false;
    bool nowait_ = false;
    bool blocking_ = false;
    bool broken_ = false;
    std::atomic<bool> arming_{false};  // an EPOLLOUT watch is posted or armed
    bool watching_ = false;
};

// Guest port -> newline-terminated lines, each handed to `on_line` (with its
// '\n'). A line longer than kMaxLine is dropped with what follows it.
class LineInputPort : public ConsolePortBackend {
  public:
    static constexpr size_t kMaxLine = 4096;
    explicit LineInputPort(std::function<void(const std::string&)> on_line)
        : on_line_(std::move(on_line)) {}
    void on_guest_output(std::span<const std::span<uint8_t>> data) override;

  private:
    std::function<void(const std::string&)> on_line_;
    std::string buf_;
};

// Host lines -> guest port, one receive buffer per line, queued (at most
// kMaxPending) while the guest has not opened the port or has no buffers.
class LineOutputPort : public ConsolePortBackend {
  public:
    static constexpr size_t kMaxPending = 64;
    void attach(VirtioConsole& c, uint32_t port) {
        console_ = &c;
        port_ = port;
    }
    void on_guest_output(std::span<const std::span<uint8_t>>) override {}
    void on_guest_open(bool open) override {
        open_ = open;
        flush();
    }
    void on_rx_space() override { flush(); }
    void send(std::string line);

  private:
    void flush();
    VirtioConsole* console_ = nullptr;
    uint32_t port_ = 0;
    bool open_ = false;
    std::deque<std::string> pending_;
};

}  // namespace kvmsandbox
