// Builds the guest-init configuration (see guest_protocol.h) for one run:
// the command, its identity, environment and working directory, the shares
// to mount and the modules to load.
#pragma once

#include <sys/types.h>
#include <optional>
#include <string>
#include <vector>

#include "protocol/shares.h"

namespace kvmsandbox {

struct GuestRunSpec {
    std::vector<std::string> argv;
    std::vector<std::string> env;  // "NAME=value", already filtered
    std::string cwd;
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;
    bool tty = false;
    unsigned rows = 0, cols = 0;
    std::string hostname = "kvmsandbox";
    std::string home;                  // created empty in the guest when set
    std::vector<std::string> modules;  // file names in the initramfs module dir, load order
    SharePlan shares;
    // The guest's interface ("ADDR/PREFIX"; gateway, dns may be empty).
    struct Net {
        std::string address_cidr, gateway, dns;
    };
    std::optional<Net> net;
    // Boot the system on this device instead (argv[0] is its init).
    struct BootRoot {
        std::string device, fstype;
    };
    std::optional<BootRoot> boot_root;
};

std::string encode_guest_config(const GuestRunSpec& spec);

// The caller's environment minus what makes no sense inside the VM (agent
// sockets, display servers, session buses).
std::vector<std::string> filter_environment(const std::vector<std::string>& env);

// Whether an environment variable is dropped by filter_environment.
bool is_host_only_variable(const std::string& name);

}  // namespace kvmsandbox
