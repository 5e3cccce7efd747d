// Raw mode for a terminal, restored when the guard goes away, on every exit
// path that unwinds (errors, guest poweroff, signals handled by the loop).
#pragma once

#include <termios.h>

namespace kvmsandbox {

class RawTerminal {
  public:
    // Does nothing when fd is not a terminal.
    explicit RawTerminal(int fd);
    RawTerminal(const RawTerminal&) = delete;
    RawTerminal& operator=(const RawTerminal&) = delete;
    ~RawTerminal();

    bool active() const { return active_; }

  private:
    int fd_;
    bool active_ = false;
    termios saved_{};
};

}  // namespace kvmsandbox
