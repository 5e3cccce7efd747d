#include "vmm/machine.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "arch/x86/acpi.h"
#include "arch/x86/boot_params.h"
#include "arch/x86/bzimage.h"
#include "arch/x86/cpu_boot_state.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"
#include "arch/x86/vmlinux.h"
#include "base/file.h"
#include "base/log.h"
#include "base/terminal.h"
#include "base/thread_role.h"
#include "vmm/boot_regs.h"

namespace kvmsandbox {

namespace {

constexpr uint64_t kMinGuestMem = 64ull << 20;
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

// x86 MSRs set on every vCPU; values are what firmware would leave.
constexpr uint32_t kMsrIa32SysenterCs = 0x174, kMsrIa32SysenterEsp = 0x175,
                   kMsrIa32SysenterEip = 0x176, kMsrStar = 0xc0000081, kMsrLstar = 0xc0000082,
                   kMsrCstar = 0xc0000083, kMsrSyscallMask = 0xc0000084,
                   kMsrKernelGsBase = 0xc0000102, kMsrIa32MiscEnable = 0x1a0,
                   kMsrMtrrDefType = 0x2ff, kMsrIa32Tsc = 0x10;
constexpr uint64_t kMiscEnableFastString = 1;
// MTRRs enabled with write-back as the default type: without it the guest
// maps all RAM uncached and runs many times slower.
constexpr uint64_t kMtrrDefTypeEnabledWriteBack = (1ull << 11) | 6;

uint64_t host_memory_bytes() {
    long pages = ::sysconf(_SC_PHYS_PAGES);
    long page = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

std::string human_size(uint64_t b) {
    if (b % (1ull << 30) == 0) return fmt::format("{}G", b >> 30);
    return fmt::format("{}M", b >> 20);
}

}  // namespace

Machine::Machine(const MachineConfig& cfg, Kvm kvm, Vm vm)
    : cfg_(cfg),
      kvm_(std::move(kvm)),
      vm_(std::move(vm)),
      com1_irq_(vm_, x86::kCom1Irq),
      sci_irq_(vm_, x86::kSciIrq),
      kbd_irq_(vm_, x86::kI8042KbdIrq),
      aux_irq_(vm_, x86::kI8042AuxIrq) {}

Machine::~Machine() {
    stop(StopStatus{StopReason::HostRequest, ""});
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    // Devices unregister their fds from the loop, which is destroyed before
    // them in member order.
    virtio_.clear();
}

Result<std::unique_ptr<Machine>> Machine::create(const MachineConfig& cfg) {
    // Check what the user gave us before anything about the host, so a typo
    // is reported the same way everywhere.
    if (cfg.mem_bytes < kMinGuestMem)
        return failf("--mem {} is too small: a Linux guest needs at least {}",
                     human_size(cfg.mem_bytes), human_size(kMinGuestMem));
    if (uint64_t host = host_memory_bytes(); host && cfg.mem_bytes > host)
        return failf("--mem {} is more than this host's {} of RAM", human_size(cfg.mem_bytes),
                     human_size(host));
    if (cfg.cpus < 1 || cfg.cpus > x86::kAcpiMaxCpus)
        return failf("--cpus {} is out of range (1..{})", cfg.cpus, x86::kAcpiMaxCpus);

    if (!cfg.kvm_unusable_reason.empty()) return fail(cfg.kvm_unusable_reason);
    auto kvm = Kvm::open(kvm_device_path());
    if (!kvm) return std::unexpected(kvm.error());
    int max_vcpus = kvm->check_extension(KVM_CAP_MAX_VCPUS);
    if (max_vcpus > 0 && cfg.cpus > static_cast<unsigned>(max_vcpus))
        return failf("--cpus {}: this host's KVM allows at most {}", cfg.cpus, max_vcpus);
    auto vm = Vm::create(*kvm);
    if (!vm) return std::unexpected(vm.error());

    std::unique_ptr<Machine> m(new Machine(cfg, std::move(*kvm), std::move(*vm)));
    auto loop = EventLoop::create();
    if (!loop) return std::unexpected(loop.error());
    m->loop_ = std::move(*loop);
    if (auto r = m->setup_memory(); !r) return std::unexpected(r.error());
    if (auto r = m->load_guest(); !r) return std::unexpected(r.error());
    if (auto r = m->setup_devices(); !r) return std::unexpected(r.error());
    if (auto r = m->setup_vcpus(); !r) return std::unexpected(r.error());
    return m;
}

Result<void> Machine::setup_memory() {
    auto ram = Mmap::anonymous(cfg_.mem_bytes);
    if (!ram) return std::unexpected(ram.error());
    ram_ = std::move(*ram);
    // Transparent huge pages cut EPT/NPT walk costs for guest RAM.
    ::madvise(ram_.data(), ram_.size(), MADV_HUGEPAGE);
    uint64_t host_off = 0;
    uint32_t slot = 0;
    for (const auto& r : x86::ram_ranges(cfg_.mem_bytes)) {
        if (auto s = vm_.add_memory_slot(slot++, r.gpa, r.size, ram_.data() + host_off); !s)
            return s;
        mem_.add_region(MemoryRegion{r.gpa, r.size, ram_.data() + host_off});
        host_off += r.size;
    }
    if (auto r = vm_.set_tss_addr(x86::kTssAddr); !r) return r;
    return vm_.create_irqchip_and_pit();
}

Result<Machine::LoadedKernel> Machine::load_bzimage(uint64_t low_ram) {
    auto file = read_file(cfg_.kernel_path, kMaxKernelFile);
    if (!file) return failf("kernel {}: {}", cfg_.kernel_path, file.error().message);
    auto bz = x86::parse_bzimage(*file);
    if (!bz) return failf("kernel {}: {}", cfg_.kernel_path, bz.error().message);
    auto kaddr = x86::choose_kernel_addr(*bz, low_ram);
    if (!kaddr) return failf("kernel {}: {}", cfg_.kernel_path, kaddr.error().message);
    if (auto r = x86::load_kernel(mem_, *bz, *file, *kaddr); !r)
        return failf("kernel {}: {}", cfg_.kernel_path, r.error().message);
    const uint64_t end = *kaddr + bz->load_footprint();
    return LoadedKernel{std::move(*bz), *kaddr, *kaddr + x86::kEntry64Offset, end};
}

Result<Machine::LoadedKernel> Machine::load_vmlinux(uint64_t low_ram) {
    // The bzImage's setup header still describes the kernel to itself
    // (command line size, initrd limits, protocol version).
    UniqueFd bzfd(::open(cfg_.kernel_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!bzfd) return fail_errno("kernel " + cfg_.kernel_path);
    auto bz_head = read_head(bzfd.get(), x86::kVmlinuxHeadBytes);
    if (!bz_head) return failf("kernel {}: {}", cfg_.kernel_path, bz_head.error().message);
    auto bz = x86::parse_bzimage_header(bz_head->bytes, bz_head->file_size);
    if (!bz) return failf("kernel {}: {}", cfg_.kernel_path, bz.error().message);

    UniqueFd fd(::open(cfg_.vmlinux_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_errno("unpacked kernel " + cfg_.vmlinux_path);
    auto head = read_head(fd.get(), x86::kVmlinuxHeadBytes);
    if (!head) return failf("unpacked kernel {}: {}", cfg_.vmlinux_path, head.error().message);
    auto k = x86::parse_vmlinux(head->bytes, head->file_size);
    if (!k) return failf("unpacked kernel {}: {}", cfg_.vmlinux_path, k.error().message);
    if (k->load_end > low_ram)
        return failf(
            "guest RAM too small for the kernel: it needs RAM up to {:#x}, RAM ends at "
            "{:#x}",
            k->load_end, low_ram);
    if (auto r = x86::load_vmlinux(mem_, *k, fd.get(), x86::kHighMemStart); !r)
        return failf("unpacked kernel {}: {}", cfg_.vmlinux_path, r.error().message);
    return LoadedKernel{std::move(*bz), k->load_start, k->entry, k->load_end};
}

Result<void> Machine::load_guest() {
    const uint64_t low_ram = std::min(cfg_.mem_bytes, x86::kMmioHoleStart);
    auto kernel = cfg_.vmlinux_path.empty() ? load_bzimage(low_ram) : load_vmlinux(low_ram);
    if (!kernel) return std::unexpected(kernel.error());
    const x86::BzImage* bz = &kernel->header;
    const uint64_t kernel_end = kernel->end;

    x86::BootConfig boot;
    boot.kernel_addr = kernel->addr;
    boot.cmdline = kDefaultCmdline;
    if (!cfg_.extra_cmdline.empty()) boot.cmdline += " " + cfg_.extra_cmdline;
    boot.e820 = x86::build_e820(cfg_.mem_bytes);

    if (!cfg_.initrd_path.empty()) {
        UniqueFd fd(::open(cfg_.initrd_path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) return fail_errno("initrd " + cfg_.initrd_path);
        struct stat st {};
        if (::fstat(fd.get(), &st) < 0) return fail_errno("initrd " + cfg_.initrd_path);
        const uint64_t size = static_cast<uint64_t>(st.st_size);
        auto iaddr = x86::place_initrd(*bz, size, low_ram, kernel_end);
        if (!iaddr)
            return failf("initrd {} ({}) does not fit in guest memory: {}", cfg_.initrd_path,
                         human_size(size), iaddr.error().message);
        auto dst = mem_.span(*iaddr, size);
        if (!dst) return failf("initrd {}: placement outside guest memory", cfg_.initrd_path);
        // Read straight into guest RAM: no intermediate copy of a large image.
        uint64_t done = 0;
        while (done < size) {
            ssize_t n =
                ::pread(fd.get(), dst->data() + done, size - done, static_cast<off_t>(done));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return fail_errno("reading initrd " + cfg_.initrd_path);
            if (n == 0) return failf("initrd {}: file shrank while reading", cfg_.initrd_path);
            done += static_cast<uint64_t>(n);
        }
        boot.initrd_addr = *iaddr;
        boot.initrd_size = size;
    } else if (!cfg_.initrd_data.empty()) {
        const uint64_t size = cfg_.initrd_data.size();
        auto iaddr = x86::place_initrd(*bz, size, low_ram, kernel_end);
        if (!iaddr)
            return failf("the initramfs ({}) does not fit in guest memory: {}", human_size(size),
                         iaddr.error().message);
        if (!mem_.write(*iaddr, cfg_.initrd_data.data(), size))
            return fail("initramfs placement outside guest memory");
        boot.initrd_addr = *iaddr;
        boot.initrd_size = size;
        cfg_.initrd_data = {};  // now in guest RAM; do not keep a second copy
    }

    auto rsdp = x86::write_acpi_tables(mem_, cfg_.cpus);
    if (!rsdp) return std::unexpected(rsdp.error());
    boot.acpi_rsdp_addr = *rsdp;
    if (auto r = x86::write_boot_params(mem_, *bz, boot); !r)
        return failf("kernel {}: {}", cfg_.kernel_path, r.error().message);
    boot_entry_ = kernel->entry;
    log::debug("booting the {} {} at {:#x}, entry {:#x}, cmdline '{}'",
               cfg_.vmlinux_path.empty() ? "bzImage" : "unpacked kernel",
               cfg_.vmlinux_path.empty() ? cfg_.kernel_path : cfg_.vmlinux_path, kernel->addr,
               kernel->entry, boot.cmdline);
    return {};
}

Result<void> Machine::setup_devices() {
    serial_ = std::make_unique<Serial8250>(
        com1_irq_, [this](std::span<const uint8_t> b) { write_console(b); });
    i8042_ = std::make_unique<I8042>(
        [this] {
            stop(StopStatus{StopReason::Reset, ""});
        },
        &kbd_irq_, &aux_irq_);
    rtc_ = std::make_unique<CmosRtc>();
    acpi_pm_ = std::make_unique<AcpiPm>(sci_irq_, [this] {
        stop(StopStatus{StopReason::Poweroff, ""});
    });
    if (auto r = pio_.add(x86::kCom1Port, Serial8250::kPortCount, serial_.get()); !r) return r;
    if (auto r = pio_.add(x86::kI8042DataPort, 1, &i8042_->data_port()); !r) return r;
    if (auto r = pio_.add(x86::kI8042CmdPort, 1, &i8042_->command_port()); !r) return r;
    if (auto r = pio_.add(x86::kCmosPort, CmosRtc::kPortCount, rtc_.get()); !r) return r;
    if (auto r = pio_.add(x86::kPm1aEvtPort, x86::kPm1aEvtLen, &acpi_pm_->event_block()); !r)
        return r;
    if (auto r = pio_.add(x86::kPm1aCntPort, x86::kPm1aCntLen, &acpi_pm_->control_block()); !r)
        return r;

    gsi_routes_ = std::make_unique<GsiRoutes>(vm_);
    bar_mapper_ = std::make_unique<BusBarMapper>(mmio_, x86::kPciMmioStart, x86::kPciMmioEnd);
    pci_ = std::make_unique<PciHostBridge>(bar_mapper_.get(), x86::kPciMmioStart, x86::kPciMmioEnd);
    return pio_.add(pci::kConfigAddressPort, PciHostBridge::kPortCount, pci_.get());
}

Result<VirtioDevice*> Machine::add_virtio_device(std::unique_ptr<VirtioDevice> device) {
    auto slot = VirtioSlot::create(vm_, *gsi_routes_, mem_, *loop_, std::move(device));
    if (!slot) return std::unexpected(slot.error());
    if (auto r = pci_->add_device((*slot)->pci()); !r) return std::unexpected(r.error());
    VirtioDevice* dev = &(*slot)->device();
    virtio_.push_back(std::move(*slot));
    return dev;
}

Result<void> Machine::setup_vcpus() {
    auto supported = kvm_.supported_cpuid();
    if (!supported) return std::unexpected(supported.error());
    std::vector<x86::CpuidEntry> base;
    base.reserve(supported->size());
    for (const auto& e : *supported)
        base.push_back(x86::CpuidEntry{e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx});

    const std::vector<std::pair<uint32_t, uint64_t>> msrs = {
        {kMsrIa32SysenterCs, 0},
        {kMsrIa32SysenterEsp, 0},
        {kMsrIa32SysenterEip, 0},
        {kMsrStar, 0},
        {kMsrLstar, 0},
        {kMsrCstar, 0},
        {kMsrSyscallMask, 0},
        {kMsrKernelGsBase, 0},
        {kMsrIa32MiscEnable, kMiscEnableFastString},
        {kMsrMtrrDefType, kMtrrDefTypeEnabledWriteBack},
        // Writing 0 on every vCPU lets KVM treat them as one synchronized TSC.
        {kMsrIa32Tsc, 0},
    };

    for (unsigned id = 0; id < cfg_.cpus; ++id) {
        auto v = Vcpu::create(kvm_, vm_, id);
        if (!v) return std::unexpected(v.error());
        auto vcpu = std::make_unique<Vcpu>(std::move(*v));
        std::vector<kvm_cpuid_entry2> entries;
        for (const auto& e : x86::cpuid_for_vcpu(base, id, cfg_.cpus)) {
            kvm_cpuid_entry2 k{};
            k.function = e.function;
            k.index = e.index;
            k.flags = e.flags;
            k.eax = e.eax;
            k.ebx = e.ebx;
            k.ecx = e.ecx;
            k.edx = e.edx;
            entries.push_back(k);
        }
        if (auto r = vcpu->set_cpuid(entries); !r) return r;
        if (auto r = vcpu->set_msrs(msrs); !r) return r;
        if (auto r = vcpu->set_fpu_defaults(); !r) return r;
        if (auto r = vcpu->set_lapic_lints(); !r) return r;
        if (id == 0) {
            // Only the boot CPU starts at the kernel entry; the others wait for
            // INIT/SIPI from the guest, as on real hardware.
            auto st = x86::setup_boot_cpu(mem_, boot_entry_, x86::kBootParamsAddr);
            if (!st) return std::unexpected(st.error());
            auto sregs = vcpu->get_sregs();
            if (!sregs) return std::unexpected(sregs.error());
            kvm_regs regs{};
            apply_boot_state(*st, *sregs, regs);
            if (auto r = vcpu->set_sregs(*sregs); !r) return r;
            if (auto r = vcpu->set_regs(regs); !r) return r;
        }
        vcpus_.push_back(std::move(vcpu));
        counters_.push_back(std::make_unique<VcpuExitCounters>());
    }
    return {};
}

void Machine::write_console(std::span<const uint8_t> bytes) {
    if (cfg_.console_out < 0) return;
    size_t off = 0;
    while (off < bytes.size()) {
        ssize_t n = ::write(cfg_.console_out, bytes.data() + off, bytes.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            pollfd p{cfg_.console_out, POLLOUT, 0};
            ::poll(&p, 1, 100);
            continue;
        }
        if (n <= 0) return;  // reader went away: drop console output, keep the VM going
        off += static_cast<size_t>(n);
    }
}

void Machine::feed_console() {
    while (console_pending_off_ < console_pending_.size()) {
        std::span<const uint8_t> rest(console_pending_.data() + console_pending_off_,
                                      console_pending_.size() - console_pending_off_);
        size_t n = serial_->enqueue_input(rest);
        if (n == 0) break;
        console_pending_off_ += n;
    }
    const bool all_sent = console_pending_off_ == console_pending_.size();
    if (all_sent) {
        console_pending_.clear();
        console_pending_off_ = 0;
    }
    // Read more host input only once the guest has taken what we have: the
    // UART's FIFO is the backpressure, and host memory stays bounded.
    if (console_in_open_) (void)loop_->modify(cfg_.console_in, all_sent ? uint32_t{EPOLLIN} : 0u);
}

Result<void> Machine::setup_console_input() {
    if (cfg_.console_in < 0) return {};
    rx_drained_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!rx_drained_fd_) return fail_errno("eventfd");
    serial_->set_on_rx_drained([this] {
        uint64_t one = 1;
        [[maybe_unused]] auto r = ::write(rx_drained_fd_.get(), &one, sizeof(one));
    });
    if (auto r = loop_->add(rx_drained_fd_.get(), EPOLLIN,
                            [this](uint32_t) {
                                uint64_t v;
                                [[maybe_unused]] auto n =
                                    ::read(rx_drained_fd_.get(), &v, sizeof(v));
                                feed_console();
                            });
        !r)
        return r;
    const bool tty = ::isatty(cfg_.console_in);
    auto added = loop_->add(cfg_.console_in, EPOLLIN, [this, tty](uint32_t) {
        uint8_t buf[4096];
        ssize_t n = ::read(cfg_.console_in, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
        if (n <= 0) {
            // End of input: the guest simply gets no more bytes.
            loop_->remove(cfg_.console_in);
            console_in_open_ = false;
            return;
        }
        for (ssize_t i = 0; i < n; ++i) {
            // Ctrl-A x leaves the VM from a raw terminal (as in QEMU); Ctrl-A
            // Ctrl-A sends one Ctrl-A to the guest.
            if (tty && saw_escape_) {
                saw_escape_ = false;
                if (buf[i] == 'x') {
                    stop(StopStatus{StopReason::HostRequest, ""});
                    return;
                }
                if (buf[i] != 0x01) console_pending_.push_back(0x01);
            } else if (tty && buf[i] == 0x01) {
                saw_escape_ = true;
                continue;
            }
            console_pending_.push_back(buf[i]);
        }
        feed_console();
    });
    // epoll cannot watch a regular file (stdin redirected from a file): such a
    // console simply has no input.
    if (!added) {
        log::debug("console input not pollable: {}", added.error().message);
        return {};
    }
    console_in_open_ = true;
    return {};
}

void Machine::kick_vcpus() {
    for (size_t i = 0; i < threads_.size(); ++i) {
        vcpus_[i]->run_area()->immediate_exit = 1;
        ::pthread_kill(threads_[i].native_handle(), vcpu_kick_signal());
    }
}

void Machine::stop(StopStatus st) {
    std::lock_guard lock(stop_mu_);
    if (stop_status_.reason == StopReason::None) stop_status_ = std::move(st);
    if (stop_flag_.exchange(true, std::memory_order_acq_rel)) return;
    if (vcpu_control_) vcpu_control_->shutdown();
    kick_vcpus();
    if (loop_) loop_->request_stop();
}

// How long pause() waits for the vCPUs to leave KVM_RUN. A vCPU is kicked
// out within microseconds unless the host is overloaded; a device handler
// that blocks (none should) would be the other reason.
constexpr std::chrono::milliseconds kPauseTimeout{5000};

Result<void> Machine::pause() {
    if (!vcpu_control_) return fail("the VM is not running");
    const bool was_paused = vcpu_control_->paused();
    if (auto r = vcpu_control_->pause(kPauseTimeout); !r) return r;
    if (was_paused) {
        vcpu_control_->resume();  // pause is not nested for users
        return {};
    }
    // Stop the guest's kvmclock with its vCPUs, as QEMU does, so a kvmclock
    // guest's time continues from where it stopped instead of jumping. (A
    // guest whose clocksource is the TSC catches up with real time.)
    if (auto c = vm_.get_clock()) paused_clock_ = *c;
    for (auto& v : vcpus_) (void)v->kvmclock_ctrl();
    return {};
}

Result<void> Machine::resume() {
    if (!vcpu_control_ || !vcpu_control_->paused()) return fail("the VM is not paused");
    if (paused_clock_) {
        if (auto r = vm_.set_clock(*paused_clock_); !r)
            log::error("resume: {} (the guest clock counts the paused time)", r.error().message);
        paused_clock_.reset();
    }
    vcpu_control_->resume();
    return {};
}

namespace {

std::string format_segment(const char* name, const kvm_segment& s) {
    return fmt::format(
        "{:<4} sel {:#06x} base {:#018x} limit {:#010x} type {:#x} dpl {} p {} l {} "
        "db {}\n",
        name, s.selector, s.base, s.limit, s.type, s.dpl, s.present, s.l, s.db);
}

}  // namespace

Result<std::string> Machine::debug_dump(bool nmi) {
    if (!vcpu_control_) return fail("the VM is not running");
    if (auto r = vcpu_control_->pause(kPauseTimeout); !r) return std::unexpected(r.error());
    std::string out;
    for (auto& v : vcpus_) {
        auto r = v->get_regs();
        auto s = v->get_sregs();
        out += fmt::format("vCPU {}:\n", v->id());
        if (!r || !s) {
            out += fmt::format("  registers unavailable: {}\n",
                               !r ? r.error().message : s.error().message);
            continue;
        }
        out += fmt::format(
            "  rip {:#018x} rsp {:#018x} rflags {:#010x}\n"
            "  rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}\n"
            "  rsi {:#018x} rdi {:#018x} rbp {:#018x}\n"
            "  r8  {:#018x} r9  {:#018x} r10 {:#018x} r11 {:#018x}\n"
            "  r12 {:#018x} r13 {:#018x} r14 {:#018x} r15 {:#018x}\n"
            "  cr0 {:#018x} cr2 {:#018x} cr3 {:#018x} cr4 {:#018x}\n"
            "  efer {:#x} apic_base {:#x}\n",
            r->rip, r->rsp, r->rflags, r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rbp,
            r->r8, r->r9, r->r10, r->r11, r->r12, r->r13, r->r14, r->r15, s->cr0, s->cr2, s->cr3,
            s->cr4, s->efer, s->apic_base);
        for (auto [name, seg] : {std::pair{"cs", &s->cs},
                                 {"ss", &s->ss},
                                 {"ds", &s->ds},
                                 {"es", &s->es},
                                 {"fs", &s->fs},
                                 {"gs", &s->gs}})
            out += "  " + format_segment(name, *seg);
        out += fmt::format("  gdt base {:#018x} limit {:#06x}  idt base {:#018x} limit {:#06x}\n",
                           s->gdt.base, s->gdt.limit, s->idt.base, s->idt.limit);
    }
    if (nmi) {
        for (auto& v : vcpus_) {
            if (auto r = v->nmi(); !r)
                out += fmt::format("vCPU {}: NMI not sent: {}\n", v->id(), r.error().message);
        }
        out += "NMI sent to every vCPU: the guest kernel reports it on its console\n";
    }
    vcpu_control_->resume();
    return out;
}

MachineStats Machine::stats() const {
    MachineStats st;
    st.cpus = cfg_.cpus;
    st.mem_bytes = cfg_.mem_bytes;
    st.paused = paused();
    st.uptime_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    // (/proc files report a size of 0, so no read_file().)
    if (FILE* f = std::fopen("/proc/self/statm", "re")) {
        unsigned long size = 0, resident = 0;
        if (std::fscanf(f, "%lu %lu", &size, &resident) == 2)
            st.vmm_rss_bytes = uint64_t{resident} * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
        std::fclose(f);
    }
    for (const auto& c : counters_)
        st.vcpus.push_back({c->total.load(), c->io.load(), c->mmio.load(), c->other.load()});
    for (const auto& slot : virtio_) {
        MachineStats::Device d{slot->device().name(), slot->device().counters()};
        for (auto& kv : slot->pci().transport_counters()) d.counters.push_back(std::move(kv));
        st.devices.push_back(std::move(d));
    }
    return st;
}

Result<StopStatus> Machine::run() {
    // Signals become events on the loop; vCPU threads inherit the mask, so
    // only the loop sees them.
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) sigaddset(&mask, s);
    if (::pthread_sigmask(SIG_BLOCK, &mask, nullptr) != 0) return fail("pthread_sigmask failed");
    signal_fd_ = UniqueFd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signal_fd_) return fail_errno("signalfd");
    ::signal(SIGPIPE, SIG_IGN);
    if (auto r = loop_->add(signal_fd_.get(), EPOLLIN,
                            [this](uint32_t) {
                                signalfd_siginfo si{};
                                if (::read(signal_fd_.get(), &si, sizeof(si)) != sizeof(si)) return;
                                const int sig = static_cast<int>(si.ssi_signo);
                                if (signal_handler_ && signal_handler_(sig)) return;
                                if (sig == SIGWINCH) return;  // only a handler cares
                                stop(StopStatus{StopReason::HostRequest,
                                                fmt::format("stopped by signal {}", si.ssi_signo),
                                                static_cast<int>(si.ssi_signo)});
                            });
        !r)
        return std::unexpected(r.error());

    RawTerminal raw(cfg_.console_in >= 0 ? cfg_.console_in : -1);
    if (auto r = setup_console_input(); !r) return std::unexpected(r.error());

    install_vcpu_kick_handler();
    vcpu_control_ = std::make_unique<VcpuControl>(vcpus_.size());
    vcpu_control_->set_kicker([this](size_t i) {
        vcpus_[i]->run_area()->immediate_exit = 1;
        ::pthread_kill(threads_[i].native_handle(), vcpu_kick_signal());
    });
    started_ = std::chrono::steady_clock::now();
    {
        // stop() takes this lock too, so a vCPU that ends the VM at once
        // still sees every thread when it kicks them.
        std::lock_guard lock(stop_mu_);
        threads_.reserve(vcpus_.size());
        for (size_t i = 0; i < vcpus_.size(); ++i) {
            VcpuLoopContext ctx;
            ctx.vcpu = vcpus_[i].get();
            ctx.pio = &pio_;
            ctx.mmio = &mmio_;
            ctx.stop = &stop_flag_;
            ctx.counters = counters_[i].get();
            ctx.control = vcpu_control_.get();
            ctx.on_stop = [this](StopStatus s) { stop(std::move(s)); };
            threads_.emplace_back(vcpu_loop, std::move(ctx));
        }
    }
    // Last: the vCPU threads are started, and a filter loaded now is not
    // inherited by them (they load their own).
    enter_thread_role(ThreadRole::Main);
    auto looped = loop_->run();
    stop(StopStatus{StopReason::HostError, looped ? "" : looped.error().message});
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    std::lock_guard lock(stop_mu_);
    return stop_status_;
}

}  // namespace kvmsandbox
