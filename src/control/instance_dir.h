// Where running VM instances publish their control sockets, and how a name
// is claimed.
//
// Layout of the instance directory (private to the user, mode 0700):
//   NAME.sock  the instance's control socket (control/server.h)
//   NAME.lock  flock()ed by the instance for its whole life
// The lock, not the socket, decides whether a name is taken: the kernel
// drops it when the process dies, however it dies. Whoever holds the lock may
// remove the files of NAME; everyone else only looks. That makes the cleanup
// of a dead instance's socket race-free against an instance of the same name
// starting up at that moment.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kvmsandbox::control {

inline constexpr size_t kMaxInstanceName = 64;

// $KVMSANDBOX_INSTANCE_DIR if set (tests), else $XDG_RUNTIME_DIR/kvmsandbox
// when XDG_RUNTIME_DIR is an existing directory of ours we can write to, else
// $HOME/.kvmsandbox. Created with mode 0700 if missing; see ensure_private_dir.
Result<std::string> instance_dir();
// Creates `path` (mode 0700, parent must exist) unless it exists, then
// refuses it if it is not a directory, is owned by another user, or is
// group- or world-writable: anyone who can write there could plant a socket
// that impersonates an instance.
Result<void> ensure_private_dir(const std::string& path);

// 1..64 characters of [A-Za-z0-9._-], not starting with '.' or '-' (so a name
// is never a hidden file, an option, "." or "..").
Result<void> validate_instance_name(std::string_view name);
// "vm-" and 6 random hex digits.
std::string random_instance_name();
// dir/NAME.sock, after checking the name and that the path fits in
// sockaddr_un.sun_path.
Result<std::string> instance_socket_path(const std::string& dir, std::string_view name);

// Names of running instances, sorted. A socket nobody listens on whose
// instance lock is free belongs to a dead instance: it is removed (with its
// lock file) and not reported.
Result<std::vector<std::string>> list_instances(const std::string& dir);

// The right to run as NAME: holds NAME.lock until destroyed, then removes
// the lock file. Destroy the ControlServer on socket_path() first, so the
// socket goes while the name is still held.
class InstanceClaim {
  public:
    InstanceClaim(InstanceClaim&&) noexcept = default;
    InstanceClaim& operator=(InstanceClaim&& o) noexcept;
    ~InstanceClaim();

    const std::string& name() const { return name_; }
    const std::string& socket_path() const { return socket_path_; }

  private:
    friend Result<InstanceClaim> claim_instance_impl(const std::string&, std::string_view, bool&);
    InstanceClaim(std::string name, std::string socket_path, std::string lock_path, UniqueFd lock)
        : name_(std::move(name)),
          socket_path_(std::move(socket_path)),
          lock_path_(std::move(lock_path)),
          lock_(std::move(lock)) {}
    void release();

    std::string name_;
    std::string socket_path_;
    std::string lock_path_;
    UniqueFd lock_;
};

// Takes NAME in `dir`. Fails with "an instance named NAME is already running"
// when its lock is held or its socket answers; removes a dead instance's
// socket. The caller then creates a ControlServer on socket_path().
Result<InstanceClaim> claim_instance(const std::string& dir, std::string_view name);
// claim_instance() with random_instance_name(), retried on collision.
Result<InstanceClaim> claim_unique_instance(const std::string& dir);

}  // namespace kvmsandbox::control
