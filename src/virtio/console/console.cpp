#include "virtio/console/console.h"

#include <algorithm>
#include <cstring>

namespace kvmsandbox {

namespace {

// Control messages are struct virtio_console_control (le32 id, le16 event,
// le16 value; the host is little-endian), optionally followed by a name.
constexpr size_t kControlSize = sizeof(virtio_console_control);
static_assert(kControlSize == 8);
// Longest port name we announce; names are ours, this only bounds the message.
constexpr size_t kMaxNameLen = 64;

// Copies up to `n` bytes from the start of a chain's readable buffers.
size_t gather(const std::vector<std::span<uint8_t>>& bufs, uint8_t* out, size_t n) {
    size_t done = 0;
    for (const auto& b : bufs) {
        if (done == n) break;
        size_t k = std::min(n - done, b.size());
        std::memcpy(out + done, b.data(), k);
        done += k;
    }
    return done;
}

}  // namespace

VirtioConsole::VirtioConsole(std::vector<ConsolePortSpec> ports) {
    if (ports.size() > kMaxPorts) ports.resize(kMaxPorts);
    for (auto& p : ports) {
        if (p.name.size() > kMaxNameLen) p.name.resize(kMaxNameLen);
        ports_.push_back(Port{std::move(p)});
    }
}

uint16_t VirtioConsole::num_queues() const {
    // Port 0's pair, the control pair, then one pair per further port.
    return static_cast<uint16_t>(2 * (ports_.size() + 1));
}

void VirtioConsole::read_config(uint32_t offset, std::span<uint8_t> data) {
    virtio_console_config c{};
    c.max_nr_ports = static_cast<uint32_t>(ports_.size());
    uint8_t cfg[sizeof(c)];
    std::memcpy(cfg, &c, sizeof(c));
    for (size_t i = 0; i < data.size(); ++i)
        data[i] = offset + i < sizeof(cfg) ? cfg[offset + i] : 0;
}

Result<void> VirtioConsole::activate(uint64_t features, std::span<SplitQueue* const> queues,
                                     VirtioInterrupt& irq) {
    std::lock_guard lock(mu_);
    if (!(features & virtio::bit(VIRTIO_CONSOLE_F_MULTIPORT)))
        return fail("virtio-console: the driver did not accept MULTIPORT");
    if (queues.size() != num_queues()) return fail("virtio-console: wrong number of queues");
    queues_.assign(queues.begin(), queues.end());
    irq_ = &irq;
    active_ = true;
    broken_ = false;
    return {};
}

void VirtioConsole::reset() {
    std::unique_lock lock(mu_);
    // The guest's ends are closed by a reset; backends hear it like a close.
    for (auto& p : ports_)
        if (p.guest_open && p.spec.backend)
            deferred_.push_back([b = p.spec.backend] { b->on_guest_open(false); });
    active_ = false;
    irq_ = nullptr;
    queues_.clear();
    control_out_.clear();
    for (auto& p : ports_) {
        const bool host_open = p.host_open;
        p = Port{p.spec};
        p.host_open = host_open;
    }
    run_deferred(lock);
}

SplitQueue* VirtioConsole::queue_locked(uint16_t q) const {
    if (!active_ || broken_ || q >= queues_.size() || !queues_[q] || !queues_[q]->ready())
        return nullptr;
    return queues_[q];
}

void VirtioConsole::fail_locked() {
    // A driver that breaks the ring rules gets no further service from this
    // device until it resets it.
    broken_ = true;
    if (irq_) irq_->set_needs_reset();
}

void VirtioConsole::interrupt_locked(uint16_t q) {
    SplitQueue* vq = queue_locked(q);
    if (vq && irq_ && vq->needs_interrupt()) irq_->signal_queue(q);
}

void VirtioConsole::send_control_locked(uint32_t id, uint16_t event, uint16_t value,
                                        std::string_view extra) {
    std::vector<uint8_t> msg(kControlSize + extra.size());
    const virtio_console_control c{id, event, value};
    std::memcpy(msg.data(), &c, sizeof(c));
    if (!extra.empty()) std::memcpy(msg.data() + kControlSize, extra.data(), extra.size());
    control_out_.push_back(std::move(msg));
    flush_control_locked();
}

template <typename More, typename Serve>
void VirtioConsole::serve_queue_locked(uint16_t q, More&& more, Serve&& serve) {
    SplitQueue* vq = queue_locked(q);
    if (!vq) return;
    bool pushed = false;
    while (more()) {
        auto chain = vq->pop();
        if (!chain) {
            fail_locked();
            return;
        }
        auto& posted = *chain;
        if (!posted.has_value())
            break;  // nothing posted: the driver notifies us when it posts more
        const Served s = serve(*posted);
        if (s.keep) {
            vq->unpop();
            break;
        }
        if (!vq->push_used(posted->head, s.written)) {
            fail_locked();
            return;
        }
        pushed = true;
        if (!s.more) break;
    }
    // One interrupt for the whole batch, if the driver wants one.
    if (pushed) interrupt_locked(q);
}

void VirtioConsole::flush_control_locked() {
    serve_queue_locked(
        2, [this] { return !control_out_.empty(); },
        [this](VirtqChain& chain) {
            const auto& msg = control_out_.front();
            size_t done = 0;
            for (const auto& b : chain.writable) {
                if (done == msg.size()) break;
                size_t k = std::min(msg.size() - done, b.size());
                std::memcpy(b.data(), msg.data() + done, k);
                done += k;
            }
            // A buffer too small for the message gets what fits; the Linux
            // driver posts page-sized buffers, so this only hurts a broken guest.
            control_out_.pop_front();
            return Served{static_cast<uint32_t>(done), true};
        });
}

void VirtioConsole::handle_control_tx_locked() {
    serve_queue_locked(
        3, [] { return true; },
        [this](VirtqChain& chain) {
            uint8_t msg[kControlSize];
            if (gather(chain.readable, msg, sizeof(msg)) == kControlSize)
                handle_control_message_locked(msg);
            // else malformed: ignore it
            return Served{0, true};
        });
}

void VirtioConsole::handle_control_message_locked(const uint8_t* msg) {
    virtio_console_control c;
    std::memcpy(&c, msg, sizeof(c));
    const uint32_t id = c.id;
    const uint16_t event = c.event;
    const uint16_t value = c.value;
    switch (event) {
        case VIRTIO_CONSOLE_DEVICE_READY:
            if (value != 1) break;
            for (uint32_t p = 0; p < ports_.size(); ++p)
                send_control_locked(p, VIRTIO_CONSOLE_PORT_ADD, 1);
            break;
        case VIRTIO_CONSOLE_PORT_READY: {
            if (id >= ports_.size() || value != 1) break;
            Port& port = ports_[id];
            port.ready = true;
            send_control_locked(id, VIRTIO_CONSOLE_PORT_NAME, 0, port.spec.name);
            send_control_locked(id, VIRTIO_CONSOLE_PORT_OPEN, port.host_open ? 1 : 0);
            port.announced = true;
            break;
        }
        case VIRTIO_CONSOLE_PORT_OPEN: {
            if (id >= ports_.size()) break;
            Port& port = ports_[id];
            const bool open = value != 0;
            if (port.guest_open == open) break;
            port.guest_open = open;
            if (auto* b = port.spec.backend)
                deferred_.push_back([b, open] { b->on_guest_open(open); });
            break;
        }
        default:
            break;  // unknown or host-only events from the guest are ignored
    }
}

void VirtioConsole::handle_port_tx_locked(uint32_t port) {
    Port& p = ports_[port];
    std::vector<std::span<uint8_t>> rest;
    serve_queue_locked(
        tx_queue(port), [] { return true; },
        [this, &p, &rest](VirtqChain& chain) {
            // The guest owns the ring: the chain may have changed since a
            // backend took part of it. Then its remainder is simply shorter.
            const size_t skip = std::min<size_t>(p.tx_taken, chain.readable_len);
            const size_t want = chain.readable_len - skip;
            size_t took = want;
            if (auto* b = p.spec.backend; b && want > 0) {
                std::span<const std::span<uint8_t>> view = chain.readable;
                if (skip > 0) {
                    rest.clear();
                    size_t left = skip;
                    for (const auto& s : chain.readable) {
                        if (left >= s.size()) {
                            left -= s.size();
                            continue;
                        }
                        rest.push_back(s.subspan(left));
                        left = 0;
                    }
                    view = rest;
                }
                took = std::min(b->take_guest_output(view), want);
            }
            bytes_from_guest_ += took;
            if (took < want) {
                p.tx_taken = skip + took;
                return Served{0, false, true};  // the rest waits in the queue
            }
            p.tx_taken = 0;
            return Served{0, true};
        });
}

void VirtioConsole::resume_output(uint32_t port) {
    std::unique_lock lock(mu_);
    if (!active_ || broken_ || port >= ports_.size()) return;
    handle_port_tx_locked(port);
    run_deferred(lock);
}

void VirtioConsole::run_deferred(std::unique_lock<std::mutex>& lock) {
    while (!deferred_.empty()) {
        auto todo = std::move(deferred_);
        deferred_.clear();
        lock.unlock();
        for (auto& f : todo) f();
        lock.lock();
    }
}

void VirtioConsole::queue_notify(uint16_t q) {
    std::unique_lock lock(mu_);
    if (!active_ || broken_) return;
    if (q == 2) {
        flush_control_locked();
    } else if (q == 3) {
        handle_control_tx_locked();
    } else {
        const uint32_t port = q < 2 ? 0 : (q - 2) / 2;
        if (port < ports_.size()) {
            if (q == tx_queue(port))
                handle_port_tx_locked(port);
            else if (auto* b = ports_[port].spec.backend)
                deferred_.push_back([b] { b->on_rx_space(); });
        }
    }
    run_deferred(lock);
}

bool VirtioConsole::can_deliver(uint32_t port) {
    std::lock_guard lock(mu_);
    if (port >= ports_.size() || !ports_[port].guest_open) return false;
    return queue_locked(rx_queue(port)) != nullptr;
}

size_t VirtioConsole::deliver(uint32_t port, const FillFn& fill) {
    std::lock_guard lock(mu_);
    if (port >= ports_.size() || !ports_[port].guest_open) return 0;
    size_t total = 0;
    serve_queue_locked(
        rx_queue(port), [] { return true; },
        [&](VirtqChain& chain) {
            ssize_t n = chain.writable.empty() ? 0 : fill(chain.writable);
            // Nothing to put in it now: give the buffer back untouched. An
            // empty completed buffer reads as end-of-file in the guest.
            if (n == 0) return Served{0, false, true};
            const uint32_t used = n > 0 ? static_cast<uint32_t>(n) : 0;
            total += used;
            return Served{used, n > 0};
        });
    bytes_to_guest_ += total;
    return total;
}

void VirtioConsole::set_host_open(uint32_t port, bool open) {
    std::lock_guard lock(mu_);
    if (port >= ports_.size()) return;
    Port& p = ports_[port];
    if (p.host_open == open && p.announced) return;
    p.host_open = open;
    if (p.ready) {
        send_control_locked(port, VIRTIO_CONSOLE_PORT_OPEN, open ? 1 : 0);
        p.announced = true;
    }
}

void VirtioConsole::drain_output() {
    std::unique_lock lock(mu_);
    for (uint32_t p = 0; p < ports_.size(); ++p) handle_port_tx_locked(p);
    handle_control_tx_locked();
    run_deferred(lock);
}

}  // namespace kvmsandbox
