// One virtual machine: guest memory, the vCPUs and their threads, the legacy
// PC devices, and the event loop that feeds the console. Built from a
// MachineConfig in create(), then run() until the guest or the host ends it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/event_loop.h"
#include "base/guest_memory.h"
#include "base/mmap.h"
#include "base/result.h"
#include "devices/acpi_pm.h"
#include "devices/bus.h"
#include "devices/cmos_rtc.h"
#include "devices/i8042.h"
#include "devices/pci.h"
#include "devices/serial8250.h"
#include "kvm/gsi_routes.h"
#include "kvm/kvm.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "vmm/machine_config.h"
#include "vmm/serial_console.h"
#include "vmm/stop_status.h"
#include "vmm/vcpu_control.h"
#include "vmm/vcpu_loop.h"
#include "vmm/virtio_slot.h"

namespace kvmsandbox {

// An IRQ line driven through KVM_IRQ_LINE.
class KvmIrqLine : public IrqLine {
  public:
    KvmIrqLine(Vm& vm, uint32_t irq) : vm_(vm), irq_(irq) {}
    void set_level(bool asserted) override { (void)vm_.set_irq_line(irq_, asserted); }

  private:
    Vm& vm_;
    uint32_t irq_;
};

// What `stat` shows of a running machine.
struct MachineStats {
    struct Vcpu {
        uint64_t exits, io, mmio, other;
    };
    struct Device {
        std::string name;
        VirtioDevice::Counters counters;  // the device's own, then the transport's
    };
    unsigned cpus = 0;
    uint64_t mem_bytes = 0;
    uint64_t vmm_rss_bytes = 0;  // resident memory of this VMM process
    double uptime_s = 0;
    bool paused = false;
    std::vector<Vcpu> vcpus;
    std::vector<Device> devices;
};

// The sizes a machine can have: memory between a Linux guest's minimum and
// the host's RAM, vCPUs within the ACPI tables' limit. create() checks them;
// the launcher calls them first to name the user's option in the message
// ("--mem 1M is too small: ...").
Result<void> check_guest_memory(uint64_t mem_bytes);
Result<void> check_vcpu_count(unsigned cpus);

class Machine {
  public:
    static Result<std::unique_ptr<Machine>> create(const MachineConfig& cfg);
    ~Machine();
    Machine(const Machine&) = delete;
    Machine& operator=(const Machine&) = delete;

    // Adds a virtio device on the PCI bus. Before run() only.
    Result<VirtioDevice*> add_virtio_device(std::unique_ptr<VirtioDevice> device);

    // The loop of the VM process: owners of devices' host sides add their
    // fds here before run(); handlers run on the thread that calls run().
    EventLoop& loop() { return *loop_; }

    // Called on the loop thread for SIGINT/SIGTERM/SIGHUP/SIGQUIT; returns
    // true when it handled the signal, false to stop the VM (the default).
    void set_signal_handler(std::function<bool(int)> h) { signal_handler_ = std::move(h); }

    const GuestMemory& memory() const { return mem_; }

    // Runs the guest until it powers off, resets, crashes, or the host stops it.
    Result<StopStatus> run();

    // Ends the VM with `st` (first caller wins). Thread-safe.
    void stop(StopStatus st);

    // ---- the control plane; loop thread, while run() runs ----
    // Parks every vCPU and stops the guest's kvmclock; resume() undoes it.
    Result<void> pause();
    Result<void> resume();
    bool paused() const { return vcpu_control_ && vcpu_control_->paused(); }
    // Registers of every vCPU (briefly pausing the guest), optionally after
    // an NMI to each so the guest kernel prints its own view.
    Result<std::string> debug_dump(bool nmi);
    // Asks the guest to shut down the ACPI way.
    void press_power_button() { acpi_pm_->press_power_button(); }
    MachineStats stats() const;
    const MachineConfig& config() const { return cfg_; }

  private:
    Machine(const MachineConfig& cfg, Kvm kvm, Vm vm);
    Result<void> setup_memory();
    Result<void> setup_devices();
    Result<void> setup_vcpus();
    Result<void> watch_signals();
    void start_vcpus();
    void kick_vcpus();

    MachineConfig cfg_;
    Kvm kvm_;
    Vm vm_;
    Mmap ram_;
    GuestMemory mem_;
    Bus pio_{"I/O port"};
    Bus mmio_{"MMIO"};
    std::vector<std::unique_ptr<Vcpu>> vcpus_;
    std::vector<std::unique_ptr<VcpuExitCounters>> counters_;
    std::vector<std::thread> threads_;

    KvmIrqLine com1_irq_;
    KvmIrqLine sci_irq_;
    KvmIrqLine kbd_irq_;
    KvmIrqLine aux_irq_;
    std::unique_ptr<Serial8250> serial_;
    std::unique_ptr<I8042> i8042_;
    std::unique_ptr<CmosRtc> rtc_;
    std::unique_ptr<AcpiPm> acpi_pm_;
    std::unique_ptr<GsiRoutes> gsi_routes_;
    std::unique_ptr<BusBarMapper> bar_mapper_;
    std::unique_ptr<PciHostBridge> pci_;
    std::vector<std::unique_ptr<VirtioSlot>> virtio_;
    std::function<bool(int)> signal_handler_;

    std::unique_ptr<VcpuControl> vcpu_control_;
    std::optional<uint64_t> paused_clock_;  // the guest clock when pause() stopped it
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();

    std::unique_ptr<EventLoop> loop_;
    std::unique_ptr<SerialConsole> console_;
    UniqueFd signal_fd_;

    uint64_t boot_entry_ = 0;  // the boot CPU's first rip
    std::atomic<bool> stop_flag_{false};
    std::mutex stop_mu_;
    StopStatus stop_status_;
};

}  // namespace kvmsandbox
