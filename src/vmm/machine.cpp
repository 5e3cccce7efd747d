#include "vmm/machine.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <csignal>

#include "arch/x86/acpi.h"
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"
#include "arch/x86/vcpu_setup.h"
#include "base/log.h"
#include "base/process.h"
#include "base/terminal.h"
#include "base/thread_role.h"
#include "vmm/debug_dump.h"
#include "vmm/kernel_loader.h"

namespace kvmsandbox {

namespace {

uint64_t host_memory_bytes() {
    long pages = ::sysconf(_SC_PHYS_PAGES);
    long page = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
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

Result<void> check_guest_memory(uint64_t mem_bytes) {
    if (mem_bytes < kMinGuestMem)
        return failf("{} is too small: a Linux guest needs at least {}", human_size(mem_bytes),
                     human_size(kMinGuestMem));
    if (uint64_t host = host_memory_bytes(); host && mem_bytes > host)
        return failf("{} is more than this host's {} of RAM", human_size(mem_bytes),
                     human_size(host));
    return {};
}

Result<void> check_vcpu_count(unsigned cpus) {
    if (cpus < 1 || cpus > x86::kAcpiMaxCpus)
        return failf("{} is out of range (1..{})", cpus, x86::kAcpiMaxCpus);
    return {};
}

Result<std::unique_ptr<Machine>> Machine::create(const MachineConfig& cfg) {
    if (auto r = check_guest_memory(cfg.mem_bytes); !r)
        return fail("guest memory " + r.error().message);
    if (auto r = check_vcpu_count(cfg.cpus); !r) return fail("vCPU count " + r.error().message);
    KS_TRY_ASSIGN(auto kvm, Kvm::open(kvm_device_path()));
    int max_vcpus = kvm.check_extension(KVM_CAP_MAX_VCPUS);
    if (max_vcpus > 0 && cfg.cpus > static_cast<unsigned>(max_vcpus))
        return failf("{} vCPUs: this host's KVM allows at most {}", cfg.cpus, max_vcpus);
    KS_TRY_ASSIGN(auto vm, Vm::create(kvm));

    std::unique_ptr<Machine> m(new Machine(cfg, std::move(kvm), std::move(vm)));
    KS_TRY_ASSIGN(m->loop_, EventLoop::create());
    KS_TRY(m->setup_memory());
    KS_TRY_ASSIGN(m->boot_entry_, load_guest_image(m->mem_, m->cfg_));
    KS_TRY(m->setup_devices());
    KS_TRY(m->setup_vcpus());
    return m;
}

Result<void> Machine::setup_memory() {
    KS_TRY_ASSIGN(auto ram, Mmap::anonymous(cfg_.mem_bytes));
    ram_ = std::move(ram);
    // Transparent huge pages cut EPT/NPT walk costs for guest RAM.
    ::madvise(ram_.data(), ram_.size(), MADV_HUGEPAGE);
    uint64_t host_off = 0;
    uint32_t slot = 0;
    for (const auto& r : x86::ram_ranges(cfg_.mem_bytes)) {
        KS_TRY(vm_.add_memory_slot(slot++, r.gpa, r.size, ram_.data() + host_off));
        mem_.add_region(MemoryRegion{r.gpa, r.size, ram_.data() + host_off});
        host_off += r.size;
    }
    KS_TRY(vm_.set_tss_addr(x86::kTssAddr));
    return vm_.create_irqchip_and_pit();
}

Result<void> Machine::setup_devices() {
    console_ = std::make_unique<SerialConsole>(*loop_, cfg_.console_in, cfg_.console_out, [this] {
        stop(StopStatus{StopReason::HostRequest, ""});
    });
    serial_ = std::make_unique<Serial8250>(
        com1_irq_, [this](std::span<const uint8_t> b) { console_->write(b); });
    i8042_ = std::make_unique<I8042>(
        [this] {
            stop(StopStatus{StopReason::Reset, ""});
        },
        &kbd_irq_, &aux_irq_);
    rtc_ = std::make_unique<CmosRtc>();
    acpi_pm_ = std::make_unique<AcpiPm>(sci_irq_, [this] {
        stop(StopStatus{StopReason::Poweroff, ""});
    });
    KS_TRY(pio_.add(x86::kCom1Port, Serial8250::kPortCount, serial_.get()));
    KS_TRY(pio_.add(x86::kI8042DataPort, 1, &i8042_->data_port()));
    KS_TRY(pio_.add(x86::kI8042CmdPort, 1, &i8042_->command_port()));
    KS_TRY(pio_.add(x86::kCmosPort, CmosRtc::kPortCount, rtc_.get()));
    KS_TRY(pio_.add(x86::kPm1aEvtPort, x86::kPm1aEvtLen, &acpi_pm_->event_block()));
    KS_TRY(pio_.add(x86::kPm1aCntPort, x86::kPm1aCntLen, &acpi_pm_->control_block()));

    gsi_routes_ = std::make_unique<GsiRoutes>(vm_);
    bar_mapper_ = std::make_unique<BusBarMapper>(mmio_, x86::kPciMmioStart, x86::kPciMmioEnd);
    pci_ = std::make_unique<PciHostBridge>(bar_mapper_.get(), x86::kPciMmioStart, x86::kPciMmioEnd);
    return pio_.add(pci::kConfigAddressPort, PciHostBridge::kPortCount, pci_.get());
}

Result<VirtioDevice*> Machine::add_virtio_device(std::unique_ptr<VirtioDevice> device) {
    KS_TRY_ASSIGN(auto slot,
                  VirtioSlot::create(vm_, *gsi_routes_, mem_, *loop_, std::move(device)));
    KS_TRY(pci_->add_device((slot)->pci()));
    VirtioDevice* dev = &(slot)->device();
    virtio_.push_back(std::move(slot));
    return dev;
}

Result<void> Machine::setup_vcpus() {
    KS_TRY_ASSIGN(const auto supported, kvm_.supported_cpuid());
    for (unsigned id = 0; id < cfg_.cpus; ++id) {
        KS_TRY_ASSIGN(auto v, Vcpu::create(kvm_, vm_, id));
        auto vcpu = std::make_unique<Vcpu>(std::move(v));
        KS_TRY(x86::setup_vcpu(*vcpu, supported, cfg_.cpus));
        // Only the boot CPU starts at the kernel entry.
        if (id == 0)
            KS_TRY(x86::setup_boot_registers(*vcpu, mem_, boot_entry_, x86::kBootParamsAddr));
        vcpus_.push_back(std::move(vcpu));
        counters_.push_back(std::make_unique<VcpuExitCounters>());
    }
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
    KS_TRY(vcpu_control_->pause(kPauseTimeout));
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

Result<std::string> Machine::debug_dump(bool nmi) {
    if (!vcpu_control_) return fail("the VM is not running");
    KS_TRY(vcpu_control_->pause(kPauseTimeout));
    std::string out;
    for (auto& v : vcpus_) {
        auto r = v->get_regs();
        auto s = v->get_sregs();
        if (!r || !s) {
            out += fmt::format("vCPU {}:\n  registers unavailable: {}\n", v->id(),
                               !r ? r.error().message : s.error().message);
            continue;
        }
        out += format_vcpu_registers(v->id(), *r, *s);
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
    st.vmm_rss_bytes = process_rss_bytes();
    for (const auto& c : counters_)
        st.vcpus.push_back({c->total.load(), c->io.load(), c->mmio.load(), c->other.load()});
    for (const auto& slot : virtio_) {
        MachineStats::Device d{slot->device().name(), slot->device().counters()};
        for (auto& kv : slot->pci().transport_counters()) d.counters.push_back(std::move(kv));
        st.devices.push_back(std::move(d));
    }
    return st;
}

Result<void> Machine::watch_signals() {
    // Signals become events on the loop; vCPU threads inherit the mask, so
    // only the loop sees them.
    KS_TRY_ASSIGN(signal_fd_, signals_to_fd({SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}));
    return loop_->add(signal_fd_.get(), EPOLLIN, [this](uint32_t) {
        signalfd_siginfo si{};
        if (::read(signal_fd_.get(), &si, sizeof(si)) != sizeof(si)) return;
        const int sig = static_cast<int>(si.ssi_signo);
        if (signal_handler_ && signal_handler_(sig)) return;
        if (sig == SIGWINCH) return;  // only a handler cares
        stop(StopStatus{StopReason::HostRequest, fmt::format("stopped by signal {}", sig), sig});
    });
}

void Machine::start_vcpus() {
    install_vcpu_kick_handler();
    vcpu_control_ = std::make_unique<VcpuControl>(vcpus_.size());
    vcpu_control_->set_kicker([this](size_t i) {
        vcpus_[i]->run_area()->immediate_exit = 1;
        ::pthread_kill(threads_[i].native_handle(), vcpu_kick_signal());
    });
    started_ = std::chrono::steady_clock::now();
    // stop() takes this lock too, so a vCPU that ends the VM at once still
    // sees every thread when it kicks them.
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

Result<StopStatus> Machine::run() {
    KS_TRY(watch_signals());
    RawTerminal raw(cfg_.console_in >= 0 ? cfg_.console_in : -1);
    KS_TRY(console_->start_input(*serial_));
    start_vcpus();
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
