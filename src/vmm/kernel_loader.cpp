#include "vmm/kernel_loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "arch/x86/acpi.h"
#include "arch/x86/boot_params.h"
#include "arch/x86/bzimage.h"
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"
#include "arch/x86/vmlinux.h"
#include "base/file.h"
#include "base/log.h"
#include "base/unique_fd.h"

namespace kvmsandbox {

namespace {

constexpr size_t kMaxKernelFile = 256ull << 20;

// Why each default is there: ttyS0 is our only console; reboot=k resets through
// the i8042 (a clean exit here instead of a triple fault); panic=-1 turns a
// panic into a reset rather than a hang; io_delay=none and 8250.nr_uarts=1 drop
// thousands of pointless port exits; no_timer_check avoids a false timer
// failure when the host is slow (nested or emulated). cryptomgr.notests skips
// the self-test of every crypto algorithm the kernel registers at boot
// (Debian's kernels run them: 1.7 s of a 8.5 s boot under emulation, where
// they found nothing a real host would); i8042.noaux skips probing a PS/2
// mouse we never emulate.
constexpr const char* kDefaultCmdline =
    "console=ttyS0 reboot=k panic=-1 io_delay=none 8250.nr_uarts=1 no_timer_check "
    "cryptomgr.notests i8042.noaux";

// The kernel as loaded: its setup header (for boot_params), where it sits
// and where the boot CPU enters it.
struct LoadedKernel {
    x86::BzImage header;
    uint64_t addr = 0;   // lowest byte
    uint64_t entry = 0;  // 64-bit entry point
    uint64_t end = 0;    // first byte after its footprint
};

Result<LoadedKernel> load_bzimage(const GuestMemory& mem, const MachineConfig& cfg,
                                  uint64_t low_ram) {
    const std::string& path = cfg.kernel_path;
    auto file = read_file(path, kMaxKernelFile);
    if (!file) return failf("kernel {}: {}", path, file.error().message);
    auto bz = x86::parse_bzimage(*file);
    if (!bz) return failf("kernel {}: {}", path, bz.error().message);
    auto kaddr = x86::choose_kernel_addr(*bz, low_ram);
    if (!kaddr) return failf("kernel {}: {}", path, kaddr.error().message);
    if (auto r = x86::load_kernel(mem, *bz, *file, *kaddr); !r)
        return failf("kernel {}: {}", path, r.error().message);
    const uint64_t end = *kaddr + bz->load_footprint();
    return LoadedKernel{std::move(*bz), *kaddr, *kaddr + x86::kEntry64Offset, end};
}

Result<LoadedKernel> load_vmlinux(const GuestMemory& mem, const MachineConfig& cfg,
                                  uint64_t low_ram) {
    // The bzImage's setup header still describes the kernel to itself
    // (command line size, initrd limits, protocol version).
    UniqueFd bzfd(::open(cfg.kernel_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!bzfd) return fail_errno("kernel " + cfg.kernel_path);
    auto bz_head = read_head(bzfd.get(), x86::kVmlinuxHeadBytes);
    if (!bz_head) return failf("kernel {}: {}", cfg.kernel_path, bz_head.error().message);
    auto bz = x86::parse_bzimage_header(bz_head->bytes, bz_head->file_size);
    if (!bz) return failf("kernel {}: {}", cfg.kernel_path, bz.error().message);

    UniqueFd fd(::open(cfg.vmlinux_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_errno("unpacked kernel " + cfg.vmlinux_path);
    auto head = read_head(fd.get(), x86::kVmlinuxHeadBytes);
    if (!head) return failf("unpacked kernel {}: {}", cfg.vmlinux_path, head.error().message);
    auto k = x86::parse_vmlinux(head->bytes, head->file_size);
    if (!k) return failf("unpacked kernel {}: {}", cfg.vmlinux_path, k.error().message);
    if (k->load_end > low_ram)
        return failf(
            "guest RAM too small for the kernel: it needs RAM up to {:#x}, RAM ends at "
            "{:#x}",
            k->load_end, low_ram);
    if (auto r = x86::load_vmlinux(mem, *k, fd.get(), x86::kHighMemStart); !r)
        return failf("unpacked kernel {}: {}", cfg.vmlinux_path, r.error().message);
    return LoadedKernel{std::move(*bz), k->load_start, k->entry, k->load_end};
}

// Reads the initrd file straight into guest RAM: no intermediate copy of a
// large image. Returns its address and size.
Result<std::pair<uint64_t, uint64_t>> load_initrd_file(const GuestMemory& mem,
                                                       const std::string& path,
                                                       const x86::BzImage& bz, uint64_t low_ram,
                                                       uint64_t kernel_end) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_errno("initrd " + path);
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) return fail_errno("initrd " + path);
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    auto iaddr = x86::place_initrd(bz, size, low_ram, kernel_end);
    if (!iaddr)
        return failf("initrd {} ({}) does not fit in guest memory: {}", path, human_size(size),
                     iaddr.error().message);
    auto dst = mem.span(*iaddr, size);
    if (!dst) return failf("initrd {}: placement outside guest memory", path);
    uint64_t done = 0;
    while (done < size) {
        ssize_t n = ::pread(fd.get(), dst->data() + done, size - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno("reading initrd " + path);
        if (n == 0) return failf("initrd {}: file shrank while reading", path);
        done += static_cast<uint64_t>(n);
    }
    return std::pair{*iaddr, size};
}

}  // namespace

std::string human_size(uint64_t b) {
    if (b % (1ull << 30) == 0) return fmt::format("{}G", b >> 30);
    return fmt::format("{}M", b >> 20);
}

Result<uint64_t> load_guest_image(const GuestMemory& mem, MachineConfig& cfg) {
    const uint64_t low_ram = std::min(cfg.mem_bytes, x86::kMmioHoleStart);
    KS_TRY_ASSIGN(auto kernel, cfg.vmlinux_path.empty() ? load_bzimage(mem, cfg, low_ram)
                                                        : load_vmlinux(mem, cfg, low_ram));
    const x86::BzImage& bz = kernel.header;

    x86::BootConfig boot;
    boot.kernel_addr = kernel.addr;
    boot.cmdline = kDefaultCmdline;
    if (!cfg.extra_cmdline.empty()) boot.cmdline += " " + cfg.extra_cmdline;
    boot.e820 = x86::build_e820(cfg.mem_bytes);

    if (!cfg.initrd_path.empty()) {
        KS_TRY_ASSIGN(auto placed, load_initrd_file(mem, cfg.initrd_path, bz, low_ram, kernel.end));
        boot.initrd_addr = placed.first;
        boot.initrd_size = placed.second;
    } else if (!cfg.initrd_data.empty()) {
        const uint64_t size = cfg.initrd_data.size();
        auto iaddr = x86::place_initrd(bz, size, low_ram, kernel.end);
        if (!iaddr)
            return failf("the initramfs ({}) does not fit in guest memory: {}", human_size(size),
                         iaddr.error().message);
        if (!mem.write(*iaddr, cfg.initrd_data.data(), size))
            return fail("initramfs placement outside guest memory");
        boot.initrd_addr = *iaddr;
        boot.initrd_size = size;
        cfg.initrd_data = {};  // now in guest RAM; do not keep a second copy
    }

    KS_TRY_ASSIGN(boot.acpi_rsdp_addr, x86::write_acpi_tables(mem, cfg.cpus));
    if (auto r = x86::write_boot_params(mem, bz, boot); !r)
        return failf("kernel {}: {}", cfg.kernel_path, r.error().message);
    log::debug("booting the {} {} at {:#x}, entry {:#x}, cmdline '{}'",
               cfg.vmlinux_path.empty() ? "bzImage" : "unpacked kernel",
               cfg.vmlinux_path.empty() ? cfg.kernel_path : cfg.vmlinux_path, kernel.addr,
               kernel.entry, boot.cmdline);
    return kernel.entry;
}

}  // namespace kvmsandbox
