// The contract between the host (kvmsandbox) and the guest's PID 1
// (guest-init/). Header-only and free of host-only dependencies, because the
// static guest-init binary includes it too.
//
// 1. The run's configuration travels in the initramfs as the file
//    kConfigPath, a sequence of records "<key> <length>:<bytes>\n" (keys are
//    short ASCII words; the bytes are arbitrary, so argv and environment
//    values may hold newlines or any byte but NUL where the kernel forbids it).
// 2. Kernel modules to load are in kModuleDir, loaded in the order of the
//    "module" records (dependencies first).
// 3. Streams use virtio-console ports, found by name under
//    /sys/class/virtio-ports/*/name:
//      kPortStdin   host -> guest: CMD's stdin; the host closes the port
//                   (VIRTIO_CONSOLE_PORT_OPEN value 0) at EOF, which guest
//                   reads see as end of file.
//      kPortStdout  guest -> host: CMD's stdout, byte-exact.
//      kPortStderr  guest -> host: CMD's stderr, byte-exact.
//      kPortTty     both ways: a terminal session (only when "tty" is 1): the
//                   guest runs CMD on a pty and pumps its master here.
//      kPortControl host -> guest: text lines "signal N" (send signal N to
//                   CMD's process group), "winsize ROWS COLS",
//                   "time SEC NSEC" (the host's CLOCK_REALTIME, read right
//                   before the write: guest-init sets its wall clock to it;
//                   see 4.).
//      kPortStatus  guest -> host: one text line when CMD is done:
//                   "exit N" | "signal N" | "error CODE message";
//                   before it, once CMD has been started,
//                   "phase init=NS cmd=NS" (guest-init's CLOCK_BOOTTIME at its
//                   start and after starting CMD, for the timing report)
//                   (CODE 126: cannot execute, 127: not found, 125: init
//                   failure). The host drains the stdout/stderr queues before
//                   acting on it, since the ports are separate queues.
//                   "time?" (kTimeRequest) asks for a "time" line (4.).
// 4. The wall clock. The guest's clock starts from the CMOS RTC, in whole
//    seconds; CMD must see the host's time. Just before starting CMD,
//    guest-init writes "time?" on the status port and waits (kTimeWaitMs at
//    most, then it keeps the RTC's time) for "time SEC NSEC" on the control
//    port, which the host sends the moment it reads the request. The error
//    is the one-way latency of that line (host write -> guest
//    clock_settime), and the guest is never ahead. The host answers each
//    request once and at most kMaxTimeAnswers in a run (the guest is not
//    trusted to ask sparingly). After `kvmsandbox resume` the guest's
//    kvmclock resumes where pause stopped it, so the host sends a "time"
//    line unasked; guest-init accepts one at any time while CMD runs.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvmsandbox::guest {

inline constexpr const char* kConfigPath = "/kvmsandbox/config";
inline constexpr const char* kModuleDir = "/kvmsandbox/modules";
inline constexpr const char* kRootfsDir = "/kvmsandbox/rootfs";  // skeleton of the guest root

inline constexpr const char* kPortStdin = "kvmsandbox.stdin";
inline constexpr const char* kPortStdout = "kvmsandbox.stdout";
inline constexpr const char* kPortStderr = "kvmsandbox.stderr";
inline constexpr const char* kPortTty = "kvmsandbox.tty";
inline constexpr const char* kPortControl = "kvmsandbox.control";
inline constexpr const char* kPortStatus = "kvmsandbox.status";

// Config record keys.
// argv (repeated, in order), env (repeated "NAME=value"), cwd, uid, gid,
// group (repeated supplementary gids), tty ("0"/"1"), rows, cols, hostname,
// module (repeated file name inside kModuleDir, in load order),
// mount (repeated: "TAG\nGUEST_PATH\nro|rw": a virtio-9p share to mount),
// symlink (repeated: "PATH\nTARGET": e.g. /bin -> usr/bin on merged-/usr hosts),
// home (the caller's $HOME path, created empty and owned by uid in the guest),
// umask (optional, octal, e.g. "022": CMD's umask; guest-init uses 022
// without it),
// net (optional: "ADDR/PREFIX\nGATEWAY\nDNS", the guest's network interface;
// GATEWAY and DNS may be empty),
// bootroot (optional: "DEVICE\nFSTYPE": instead of running CMD in our root,
// mount DEVICE as the root and exec argv[0] there as PID 1; run --disk).
// Unknown keys are ignored by guest-init, so new optional records can be added.
struct Record {
    std::string key;
    std::string value;
};

inline void append_record(std::string& out, std::string_view key, std::string_view value) {
    out.append(key);
    out.push_back(' ');
    out.append(std::to_string(value.size()));
    out.push_back(':');
    out.append(value);
    out.push_back('\n');
}

// Parses the whole config; nullopt on any malformed record (the guest then
// reports "error 125").
inline std::optional<std::vector<Record>> parse_records(std::string_view in) {
    std::vector<Record> out;
    size_t pos = 0;
    while (pos < in.size()) {
        size_t sp = in.find(' ', pos);
        if (sp == std::string_view::npos || sp == pos || sp - pos > 32) return std::nullopt;
        size_t colon = in.find(':', sp + 1);
        if (colon == std::string_view::npos || colon == sp + 1 || colon - sp - 1 > 10)
            return std::nullopt;
        size_t len = 0;
        for (size_t i = sp + 1; i < colon; ++i) {
            if (in[i] < '0' || in[i] > '9') return std::nullopt;
            len = len * 10 + static_cast<size_t>(in[i] - '0');
        }
        size_t start = colon + 1;
        if (len > in.size() - start || in.size() - start - len < 1 || in[start + len] != '\n')
            return std::nullopt;
        out.push_back(
            Record{std::string(in.substr(pos, sp - pos)), std::string(in.substr(start, len))});
        pos = start + len + 1;
    }
    return out;
}

// ---- 4. The wall clock ----

inline constexpr std::string_view kTimeRequest = "time?";  // a status line, without '\n'
inline constexpr int kTimeWaitMs = 2000;
inline constexpr unsigned kMaxTimeAnswers = 8;
// 9999-12-31T23:59:59Z: any wall clock beyond it is garbage, and it keeps
// SEC within every time_t and far from overflow in arithmetic.
inline constexpr int64_t kMaxTimeSec = 253402300799;

struct WallTime {
    int64_t sec = 0;
    int64_t nsec = 0;  // 0 .. 999999999
};

// "time SEC NSEC\n".
inline std::string format_time_line(WallTime t) {
    return "time " + std::to_string(t.sec) + " " + std::to_string(t.nsec) + "\n";
}

// Parses "time SEC NSEC" (one trailing '\n' allowed); nullopt unless both are
// plain decimal numbers in range (0 <= SEC <= kMaxTimeSec, 0 <= NSEC < 1e9).
inline std::optional<WallTime> parse_time_line(std::string_view l) {
    if (l.ends_with('\n')) l.remove_suffix(1);
    constexpr std::string_view kPrefix = "time ";
    if (!l.starts_with(kPrefix)) return std::nullopt;
    l.remove_prefix(kPrefix.size());
    auto sp = l.find(' ');
    if (sp == std::string_view::npos) return std::nullopt;
    std::string_view a = l.substr(0, sp), b = l.substr(sp + 1);
    auto digits = [](std::string_view s, size_t max_len) {
        if (s.empty() || s.size() > max_len) return false;
        for (char c : s)
            if (c < '0' || c > '9') return false;
        return true;
    };
    // The length caps keep from_chars away from overflow.
    if (!digits(a, 12) || !digits(b, 9)) return std::nullopt;
    WallTime t;
    std::from_chars(a.data(), a.data() + a.size(), t.sec);
    std::from_chars(b.data(), b.data() + b.size(), t.nsec);
    if (t.sec > kMaxTimeSec) return std::nullopt;
    return t;
}

}  // namespace kvmsandbox::guest
