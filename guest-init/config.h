// The run's configuration as guest-init uses it: the records of
// protocol/guest_protocol.h turned into a typed, validated struct.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "guest-init/net.h"
#include "protocol/guest_protocol.h"

namespace kvmsandbox::guest_init {

// A virtio-9p share: "TAG\nGUEST_PATH\nro|rw".
struct ShareMount {
    std::string tag;
    std::string path;  // absolute, in the guest
    bool read_only = true;
    bool operator==(const ShareMount&) const = default;
};

// "PATH\nTARGET": a symlink in the guest root (e.g. /bin -> usr/bin).
struct SymlinkSpec {
    std::string path;  // absolute, in the guest
    std::string target;
    bool operator==(const SymlinkSpec&) const = default;
};

// "DEVICE\nFSTYPE": boot the system on a disk instead of running CMD in our
// root (run --disk): mount DEVICE as the root and exec argv[0] as PID 1.
struct BootRoot {
    std::string device;  // /dev/vda, ...
    std::string fstype;
    bool operator==(const BootRoot&) const = default;
};

struct GuestConfig {
    std::vector<std::string> argv;  // never empty
    std::vector<std::string> env;   // "NAME=value"
    std::string cwd = "/";
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;
    bool tty = false;
    unsigned short rows = 24, cols = 80;
    std::string hostname = "kvmsandbox";
    std::string home;  // empty: none
    mode_t umask = 022;
    std::vector<std::string> modules;
    std::vector<SymlinkSpec> symlinks;
    std::vector<ShareMount> mounts;
    std::optional<NetConfig> net;
    std::optional<BootRoot> boot_root;
};

std::expected<BootRoot, std::string> parse_boot_root_record(std::string_view value);

std::expected<ShareMount, std::string> parse_mount_record(std::string_view value);
std::expected<SymlinkSpec, std::string> parse_symlink_record(std::string_view value);

// Unknown keys are ignored so that a newer host can add optional records.
// argv, uid and gid are required: running CMD as root because a record went
// missing would be a silent privilege change.
std::expected<GuestConfig, std::string> config_from_records(const std::vector<guest::Record>& recs);
std::expected<GuestConfig, std::string> parse_config(std::string_view text);

// Decimal id as the host writes it; (uid_t)-1 is refused since the kernel
// reads it as "leave unchanged".
std::optional<uint32_t> parse_id(std::string_view s);

// Whether the kernel command line holds FLAG as a word ("flag" or "flag=V",
// V not "0"); the first occurrence decides.
bool cmdline_has_flag(std::string_view cmdline, std::string_view flag);

}  // namespace kvmsandbox::guest_init
