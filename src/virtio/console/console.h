// virtio-console with the MULTIPORT feature: named ports (/dev/vportNpM in
// the guest), each a byte stream in both directions, plus the control queues
// that announce ports, their names and open/closed state.
//
// Threading: every entry point takes the device lock; backends are called
// with it held and must not call back into the device from the callback
// except through deliver() from on_rx_space()/on_guest_open() (which run
// after the lock is released, see notify_backends_).
#pragma once

#include <linux/virtio_console.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "virtio/transport/virtio_device.h"

namespace kvmsandbox {

class ConsolePortBackend {
  public:
    virtual ~ConsolePortBackend() = default;
    // Bytes the guest wrote to the port: views of guest memory, valid only
    // during the call. Runs on the thread that processed the queue.
    virtual void on_guest_output(std::span<const std::span<uint8_t>> data) = 0;
    // Like on_guest_output, but may take only the first part of the bytes
    // and returns how many it took: the device then leaves the rest in the
    // guest's queue (the guest's writer waits, as a local one would on a full
    // pipe) until the backend calls VirtioConsole::resume_output(). The
    // default takes everything.
    virtual size_t take_guest_output(std::span<const std::span<uint8_t>> data) {
        on_guest_output(data);
        size_t n = 0;
        for (const auto& b : data) n += b.size();
        return n;
    }
    // The guest opened (true) or closed (false) its end of the port.
    virtual void on_guest_open(bool /*open*/) {}
    // The guest posted receive buffers: host-to-guest data can flow.
    virtual void on_rx_space() {}
};

struct ConsolePortSpec {
    std::string name;
    ConsolePortBackend* backend = nullptr;  // not owned; may be null (output dropped)
};

// Feature bits (VIRTIO_CONSOLE_F_*), control events (VIRTIO_CONSOLE_PORT_*
// and friends) and the layouts of the config space and the control messages
// are <linux/virtio_console.h>'s.
class VirtioConsole : public VirtioDevice {
  public:
    static constexpr uint16_t kQueueSize = 256;
    static constexpr uint32_t kMaxPorts = 16;

    explicit VirtioConsole(std::vector<ConsolePortSpec> ports);

    uint16_t device_type() const override { return VIRTIO_ID_CONSOLE; }
    uint64_t device_features() const override { return virtio::bit(VIRTIO_CONSOLE_F_MULTIPORT); }
    uint16_t num_queues() const override;
    uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
    uint32_t pci_class() const override { return 0x078000; }  // simple communication controller
    uint32_t config_size() const override { return sizeof(virtio_console_config); }
    void read_config(uint32_t offset, std::span<uint8_t> data) override;
    void write_config(uint32_t, std::span<const uint8_t>) override {}
    Result<void> activate(uint64_t features, std::span<SplitQueue* const> queues,
                          VirtioInterrupt& irq) override;
    void reset() override;
    void queue_notify(uint16_t q) override;

    // Host -> guest on `port`: `fill` is called with the writable buffers of
    // one receive chain at a time and returns the bytes it stored (> 0), 0
    // when it has nothing more now, or < 0 to stop (end of input or error).
    // Returns the bytes delivered. Nothing is delivered before the guest has
    // opened the port: the guest driver would drop it.
    using FillFn = std::function<ssize_t(std::span<const std::span<uint8_t>>)>;
    size_t deliver(uint32_t port, const FillFn& fill);
    // Whether the guest has the port open and receive buffers posted.
    bool can_deliver(uint32_t port);
    // Connects or disconnects the host side (PORT_OPEN). A guest reading a
    // disconnected port gets end-of-file once the data already sent is read;
    // a guest writing to it blocks, so output ports stay connected.
    void set_host_open(uint32_t port, bool open);
    // Processes every guest -> host chain pending on any port.
    void drain_output();
    // Serves `port`'s output again after its backend took less than it was
    // given (take_guest_output) and can now take more.
    void resume_output(uint32_t port);

    uint64_t bytes_to_guest() const { return bytes_to_guest_.load(std::memory_order_relaxed); }
    uint64_t bytes_from_guest() const { return bytes_from_guest_.load(std::memory_order_relaxed); }
    std::string name() const override { return "console"; }
    Counters counters() const override {
        return {{"bytes_to_guest", bytes_to_guest()}, {"bytes_from_guest", bytes_from_guest()}};
    }

  private:
    struct Port {
        ConsolePortSpec spec;
        bool ready = false;       // guest sent PORT_READY
        bool guest_open = false;  // guest has the port open
        bool host_open = true;    // what we announce
        bool announced = false;   // PORT_OPEN sent at least once
        // Bytes of the chain at the head of the transmit queue that the
        // backend has already taken (it took only a part).
        size_t tx_taken = 0;
    };
    static uint16_t rx_queue(uint32_t port) { return port == 0 ? 0 : 2 + 2 * port; }
    static uint16_t tx_queue(uint32_t port) { return port == 0 ? 1 : 3 + 2 * port; }

    struct Served {
        uint32_t written = 0;  // bytes stored in the chain's writable buffers
        bool more = false;     // keep serving further chains
        bool keep = false;     // give the chain back unused (SplitQueue::unpop)
    };
    // Pops chains of queue `q` while more() holds, lets serve() fill or read
    // each, returns them to the driver and raises one interrupt for all.
    template <typename More, typename Serve>
    void serve_queue_locked(uint16_t q, More&& more, Serve&& serve);
    void handle_control_message_locked(const uint8_t* msg);
    void send_control_locked(uint32_t id, uint16_t event, uint16_t value,
                             std::string_view extra = {});
    void flush_control_locked();
    void handle_control_tx_locked();
    void handle_port_tx_locked(uint32_t port);
    void interrupt_locked(uint16_t q);
    SplitQueue* queue_locked(uint16_t q) const;
    void fail_locked();
    void run_deferred(std::unique_lock<std::mutex>& lock);

    std::mutex mu_;
    std::vector<Port> ports_;
    std::vector<SplitQueue*> queues_;
    VirtioInterrupt* irq_ = nullptr;
    bool active_ = false;
    bool broken_ = false;
    std::deque<std::vector<uint8_t>> control_out_;  // waiting for control receive buffers
    // Backend notifications raised under the lock, run after it is released.
    std::vector<std::function<void()>> deferred_;
    std::atomic<uint64_t> bytes_to_guest_{0};
    std::atomic<uint64_t> bytes_from_guest_{0};
};

}  // namespace kvmsandbox
