#include "virtio/net/net.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <system_error>

#include "base/log.h"
#include "base/thread_role.h"

namespace kvmsandbox {

namespace {

// struct virtio_net_hdr_v1 field offsets: the header is parsed from a copy
// in our own buffer, byte by byte, at any alignment.
constexpr size_t kHdrFlags = offsetof(virtio_net_hdr_v1, flags);
constexpr size_t kHdrGsoType = offsetof(virtio_net_hdr_v1, gso_type);
constexpr size_t kHdrGsoSize = offsetof(virtio_net_hdr_v1, gso_size);
constexpr size_t kHdrCsumStart = offsetof(virtio_net_hdr_v1, csum_start);
constexpr size_t kHdrCsumOffset = offsetof(virtio_net_hdr_v1, csum_offset);
constexpr size_t kHdrNumBuffers = offsetof(virtio_net_hdr_v1, num_buffers);
static_assert(net::kVnetHdrSize == 12 && kHdrNumBuffers == 10);

constexpr size_t kBufSize = net::kVnetHdrSize + net::kMaxFrameSize;

uint16_t get_le16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] | p[1] << 8);
}
void put_le16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v);
    p[1] = static_cast<uint8_t>(v >> 8);
}

// Completes a CHECKSUM_PARTIAL frame the way a NIC would: the field already
// holds the pseudo-header sum, so summing from csum_start to the end and
// storing the complement yields the final checksum. The caller checked
// that start + offset + 2 <= frame.size().
void complete_checksum(std::span<uint8_t> frame, size_t start, size_t offset) {
    uint64_t sum = 0;
    size_t i = start;
    for (; i + 1 < frame.size(); i += 2) sum += static_cast<uint32_t>(frame[i] << 8 | frame[i + 1]);
    if (i < frame.size()) sum += static_cast<uint32_t>(frame[i] << 8);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    uint16_t csum = static_cast<uint16_t>(~sum);
    // 0 means "no checksum" for UDP; 0xffff is the same value in ones'
    // complement arithmetic and valid for every protocol.
    if (csum == 0) csum = 0xffff;
    frame[start + offset] = static_cast<uint8_t>(csum >> 8);
    frame[start + offset + 1] = static_cast<uint8_t>(csum);
}

}  // namespace

Result<std::unique_ptr<VirtioNet>> VirtioNet::create(std::unique_ptr<NetBackend> backend,
                                                     const Mac& mac) {
    if (!backend) return fail("virtio-net: no backend");
    UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake) return fail_errno("virtio-net: eventfd");
    std::unique_ptr<VirtioNet> dev(new VirtioNet(std::move(backend), mac, std::move(wake)));
    try {
        dev->thread_ = std::thread([d = dev.get()] { d->run(); });
    } catch (const std::system_error& e) {
        return failf("virtio-net: cannot start its thread: {}", e.what());
    }
    return dev;
}

VirtioNet::VirtioNet(std::unique_ptr<NetBackend> backend, const Mac& mac, UniqueFd wake)
    : backend_(std::move(backend)),
      mac_(mac),
      vnet_hdr_(backend_->vnet_hdr()),
      wake_(std::move(wake)),
      rx_buf_(kBufSize),
      tx_buf_(kBufSize) {}

VirtioNet::~VirtioNet() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    wake();
    if (thread_.joinable()) thread_.join();
}

void VirtioNet::wake() {
    const uint64_t one = 1;
    // EAGAIN means the counter is already non-zero: the thread wakes anyway.
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof(one));
}

uint64_t VirtioNet::device_features() const {
    uint64_t f = virtio::bit(VIRTIO_NET_F_MAC) | virtio::bit(VIRTIO_NET_F_STATUS) |
                 virtio::bit(VIRTIO_NET_F_MRG_RXBUF) | virtio::bit(VIRTIO_NET_F_CSUM) |
                 virtio::bit(VIRTIO_NET_F_GUEST_CSUM);
    if (backend_->mtu()) f |= virtio::bit(VIRTIO_NET_F_MTU);
    // TSO needs the header to reach the backend (and a GSO frame to come
    // back): only a vnet-header backend can take or produce one.
    if (vnet_hdr_)
        f |= virtio::bit(VIRTIO_NET_F_HOST_TSO4) | virtio::bit(VIRTIO_NET_F_HOST_TSO6) |
             virtio::bit(VIRTIO_NET_F_HOST_ECN) | virtio::bit(VIRTIO_NET_F_GUEST_TSO4) |
             virtio::bit(VIRTIO_NET_F_GUEST_TSO6) | virtio::bit(VIRTIO_NET_F_GUEST_ECN);
    return f;
}

void VirtioNet::read_config(uint32_t offset, std::span<uint8_t> data) {
    virtio_net_config c{};
    std::copy(mac_.begin(), mac_.end(), c.mac);
    c.status = VIRTIO_NET_S_LINK_UP;
    c.max_virtqueue_pairs = 1;
    c.mtu = backend_->mtu().value_or(0);
    uint8_t cfg[kConfigSize];
    std::memcpy(cfg, &c, sizeof(cfg));
    for (size_t i = 0; i < data.size(); ++i)
        data[i] = offset + i < sizeof(cfg) ? cfg[offset + i] : 0;
}

Result<void> VirtioNet::activate(uint64_t features, std::span<SplitQueue* const> queues,
                                 VirtioInterrupt& irq) {
    std::lock_guard lock(mu_);
    if (queues.size() != 2 || !queues[kRxQueue] || !queues[kTxQueue])
        return fail("virtio-net: needs its receive and transmit queues");
    // What reaches a tap from the kernel is bounded by what we allow it to
    // send: partial checksums and TSO only as far as the driver takes them
    // (TSO without partial checksums does not exist).
    net::GuestOffloads off;
    off.csum = (features & virtio::bit(VIRTIO_NET_F_GUEST_CSUM)) != 0;
    off.tso4 = off.csum && (features & virtio::bit(VIRTIO_NET_F_GUEST_TSO4));
    off.tso6 = off.csum && (features & virtio::bit(VIRTIO_NET_F_GUEST_TSO6));
    off.ecn = (off.tso4 || off.tso6) && (features & virtio::bit(VIRTIO_NET_F_GUEST_ECN));
    if (auto r = backend_->set_offloads(off); !r) return failf("virtio-net: {}", r.error().message);
    queues_[kRxQueue] = queues[kRxQueue];
    queues_[kTxQueue] = queues[kTxQueue];
    irq_ = &irq;
    features_ = features;
    active_ = true;
    broken_ = false;
    rx_stalled_ = false;
    rx_chains_.clear();
    wake();
    return {};
}

void VirtioNet::reset() {
    std::lock_guard lock(mu_);
    queues_[kRxQueue] = queues_[kTxQueue] = nullptr;
    irq_ = nullptr;
    features_ = 0;
    active_ = false;
    broken_ = false;
    rx_stalled_ = false;
    // Held chains belong to the old rings and must never be pushed.
    rx_chains_.clear();
    if (rx_len_) {
        rx_dropped_.fetch_add(1, std::memory_order_relaxed);
        rx_len_ = 0;
    }
}

SplitQueue* VirtioNet::queue_locked(uint16_t q) const {
    if (!active_ || broken_ || q > kTxQueue) return nullptr;
    SplitQueue* vq = queues_[q];
    if (!vq || !vq->ready() || vq->broken()) return nullptr;
    return vq;
}

void VirtioNet::fail_locked() {
    // No further service until the driver resets the device.
    broken_ = true;
    rx_chains_.clear();
    if (irq_) irq_->set_needs_reset();
}

void VirtioNet::queue_notify(uint16_t q) {
    std::lock_guard lock(mu_);
    if (q == kTxQueue) {
        process_tx_locked();
    } else if (q == kRxQueue) {
        rx_stalled_ = false;
        process_rx_locked();
        // The thread may have stopped polling the backend for lack of buffers.
        if (!rx_stalled_) wake();
    }
}

// ---- transmit ---------------------------------------------------------------

void VirtioNet::process_tx_locked() {
    SplitQueue* vq = queue_locked(kTxQueue);
    if (!vq) return;
    bool pushed = false;
    for (;;) {
        auto chain = vq->pop();
        if (!chain) {
            fail_locked();
            return;
        }
        if (!*chain) break;
        if (!transmit_locked(**chain)) {
            fail_locked();
            return;
        }
        if (!vq->push_used((*chain)->head, 0)) {
            fail_locked();
            return;
        }
        pushed = true;
    }
    if (pushed && irq_ && vq->needs_interrupt()) irq_->signal_queue(kTxQueue);
}

bool VirtioNet::transmit_locked(const VirtqChain& chain) {
    // Transmit buffers are device-readable and start with the whole header.
    if (chain.writable_len != 0 || chain.readable_len < net::kVnetHdrSize) return false;
    auto drop = [&] {
        tx_dropped_.fetch_add(1, std::memory_order_relaxed);
        return true;
    };
    if (chain.readable_len > kBufSize) return drop();

    // One copy out of guest memory: everything below looks at the copy only,
    // so the guest cannot change a field after it was checked.
    size_t len = 0;
    for (const auto& b : chain.readable) {
        std::memcpy(tx_buf_.data() + len, b.data(), b.size());
        len += b.size();
    }
    const uint8_t* hdr = tx_buf_.data();
    const size_t frame_len = len - net::kVnetHdrSize;
    if (frame_len < net::kEthHeaderSize) return drop();

    const uint8_t flags = hdr[kHdrFlags];
    const uint8_t gso = hdr[kHdrGsoType];
    // DATA_VALID and RSC_INFO are the device's to set, never the driver's.
    if (flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM) return drop();
    if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
        const size_t start = get_le16(hdr + kHdrCsumStart);
        const size_t off = get_le16(hdr + kHdrCsumOffset);
        if (!(features_ & virtio::bit(VIRTIO_NET_F_CSUM)) || start + off + 2 > frame_len)
            return drop();
    }
    if (gso != VIRTIO_NET_HDR_GSO_NONE) {
        const uint8_t type = gso & ~VIRTIO_NET_HDR_GSO_ECN;
        const bool ok_type =
            (type == VIRTIO_NET_HDR_GSO_TCPV4 &&
             (features_ & virtio::bit(VIRTIO_NET_F_HOST_TSO4))) ||
            (type == VIRTIO_NET_HDR_GSO_TCPV6 && (features_ & virtio::bit(VIRTIO_NET_F_HOST_TSO6)));
        const bool ok_ecn =
            !(gso & VIRTIO_NET_HDR_GSO_ECN) || (features_ & virtio::bit(VIRTIO_NET_F_HOST_ECN));
        // A GSO frame is always a partial-checksum one, with a segment size.
        if (!ok_type || !ok_ecn || !(flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) ||
            get_le16(hdr + kHdrGsoSize) == 0)
            return drop();
    }

    std::span<uint8_t> out(tx_buf_.data(), len);
    if (!vnet_hdr_) {
        out = out.subspan(net::kVnetHdrSize);
        if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
            complete_checksum(out, get_le16(hdr + kHdrCsumStart), get_le16(hdr + kHdrCsumOffset));
    } else {
        // Not the backend's business (and meaningless on transmit).
        put_le16(tx_buf_.data() + kHdrNumBuffers, 0);
    }
    if (!backend_->send(out)) return drop();
    tx_packets_.fetch_add(1, std::memory_order_relaxed);
    tx_bytes_.fetch_add(frame_len, std::memory_order_relaxed);
    return true;
}

// ---- receive ----------------------------------------------------------------

void VirtioNet::run() {
    enter_thread_role(ThreadRole::NetRx);
    const int rx_fd = backend_->rx_fd();
    for (;;) {
        bool want_rx;
        {
            std::lock_guard lock(mu_);
            if (stop_) return;
            want_rx = active_ && !broken_ && !rx_stalled_;
        }
        // A negative fd is skipped by poll(): not even errors are reported,
        // which a stalled backend fd must not do (it would spin this loop).
        pollfd fds[2] = {{wake_.get(), POLLIN, 0}, {want_rx ? rx_fd : -1, POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            log::error("virtio-net: poll: {}", std::strerror(errno));
            return;
        }
        if (fds[0].revents & POLLIN) {
            uint64_t v;
            [[maybe_unused]] ssize_t n = ::read(wake_.get(), &v, sizeof(v));
        }
        if (fds[1].revents) {
            std::lock_guard lock(mu_);
            const uint64_t before = rx_packets_.load(std::memory_order_relaxed) +
                                    rx_dropped_.load(std::memory_order_relaxed);
            process_rx_locked();
            const uint64_t after = rx_packets_.load(std::memory_order_relaxed) +
                                   rx_dropped_.load(std::memory_order_relaxed);
            // A backend fd that keeps reporting errors without yielding
            // frames (a tap whose interface went away) must not spin this
            // thread: stop polling it until the driver posts buffers again.
            if (before == after && rx_len_ == 0 && (fds[1].revents & ~POLLIN)) rx_stalled_ = true;
        }
    }
}

int VirtioNet::pop_rx_chain_locked(SplitQueue& vq) {
    auto chain = vq.pop();
    if (!chain) return -1;
    if (!*chain) return 0;
    // Receive buffers are device-writable only and each has room for the
    // header (5.1.6.3.1); anything else is a driver bug we do not guess around.
    if ((*chain)->readable_len != 0 || (*chain)->writable_len < net::kVnetHdrSize) return -1;
    rx_chains_.push_back(std::move(**chain));
    return 1;
}

size_t VirtioNet::fetch_frame_locked() {
    for (;;) {
        uint8_t* hdr = rx_buf_.data();
        size_t n;
        if (vnet_hdr_) {
            n = backend_->recv(rx_buf_);
            if (n == 0) return 0;
            if (n > kBufSize || n < net::kVnetHdrSize + net::kEthHeaderSize) {
                rx_dropped_.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            // The host kernel fills the header, but only for the offloads
            // that were in force when it queued the frame: one from before
            // a renegotiation may use an offload the driver now lacks.
            const uint8_t gso = hdr[kHdrGsoType] & ~VIRTIO_NET_HDR_GSO_ECN;
            const bool csum_ok = !(hdr[kHdrFlags] & VIRTIO_NET_HDR_F_NEEDS_CSUM) ||
                                 (features_ & virtio::bit(VIRTIO_NET_F_GUEST_CSUM));
            const bool gso_ok = gso == VIRTIO_NET_HDR_GSO_NONE ||
                                (gso == VIRTIO_NET_HDR_GSO_TCPV4 &&
                                 (features_ & virtio::bit(VIRTIO_NET_F_GUEST_TSO4))) ||
                                (gso == VIRTIO_NET_HDR_GSO_TCPV6 &&
                                 (features_ & virtio::bit(VIRTIO_NET_F_GUEST_TSO6)));
            const bool ecn_ok = !(hdr[kHdrGsoType] & VIRTIO_NET_HDR_GSO_ECN) ||
                                (features_ & virtio::bit(VIRTIO_NET_F_GUEST_ECN));
            if (!csum_ok || !gso_ok || !ecn_ok) {
                rx_dropped_.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            if (!(features_ & virtio::bit(VIRTIO_NET_F_GUEST_CSUM))) hdr[kHdrFlags] = 0;
        } else {
            n = backend_->recv(std::span<uint8_t>(rx_buf_).subspan(net::kVnetHdrSize));
            if (n == 0) return 0;
            if (n > net::kMaxFrameSize || n < net::kEthHeaderSize) {
                rx_dropped_.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            std::memset(hdr, 0, net::kVnetHdrSize);
            // The backend's frames carry correct checksums.
            if (features_ & virtio::bit(VIRTIO_NET_F_GUEST_CSUM))
                hdr[kHdrFlags] = VIRTIO_NET_HDR_F_DATA_VALID;
            n += net::kVnetHdrSize;
        }
        return n;
    }
}

void VirtioNet::process_rx_locked() {
    SplitQueue* vq = queue_locked(kRxQueue);
    if (!vq) return;
    const bool mergeable = (features_ & virtio::bit(VIRTIO_NET_F_MRG_RXBUF)) != 0;
    bool pushed = false;
    auto finish = [&] {
        if (pushed && irq_ && vq->needs_interrupt()) irq_->signal_queue(kRxQueue);
    };
    for (;;) {
        // A frame is only taken from the backend once there is a buffer for
        // it: until then it waits there, in a bounded queue.
        if (rx_chains_.empty()) {
            const int r = pop_rx_chain_locked(*vq);
            if (r < 0) {
                finish();
                fail_locked();
                return;
            }
            if (r == 0) {
                rx_stalled_ = true;
                break;
            }
        }
        if (rx_len_ == 0) {
            rx_len_ = fetch_frame_locked();
            if (rx_len_ == 0) break;
        }

        // Enough buffers for the frame: one chain without MRG_RXBUF,
        // as many as it takes with it.
        size_t have = 0, nchains = 0;
        for (; nchains < rx_chains_.size() && have < rx_len_; ++nchains)
            have += rx_chains_[nchains].writable_len;
        if (!mergeable && rx_chains_[0].writable_len < rx_len_) {
            // Kept for the next frame, which may be smaller.
            rx_dropped_.fetch_add(1, std::memory_order_relaxed);
            rx_len_ = 0;
            continue;
        }
        if (mergeable && have < rx_len_) {
            const int r = pop_rx_chain_locked(*vq);
            if (r < 0) {
                finish();
                fail_locked();
                return;
            }
            if (r == 0) {
                if (rx_chains_.size() >= vq->size()) {
                    // The whole ring cannot hold it: it never will.
                    rx_dropped_.fetch_add(1, std::memory_order_relaxed);
                    rx_len_ = 0;
                    continue;
                }
                rx_stalled_ = true;
                break;
            }
            continue;
        }
        if (!mergeable) nchains = 1;
        if (!deliver_locked(*vq, nchains)) {
            finish();
            fail_locked();
            return;
        }
        pushed = true;
    }
    finish();
}

bool VirtioNet::deliver_locked(SplitQueue& vq, size_t nchains) {
    put_le16(rx_buf_.data() + kHdrNumBuffers, static_cast<uint16_t>(nchains));
    size_t off = 0;
    for (size_t i = 0; i < nchains; ++i) {
        const VirtqChain& c = rx_chains_[i];
        size_t written = 0;
        for (const auto& b : c.writable) {
            if (off == rx_len_) break;
            const size_t k = std::min(b.size(), rx_len_ - off);
            std::memcpy(b.data(), rx_buf_.data() + off, k);
            off += k;
            written += k;
        }
        if (!vq.push_used(c.head, static_cast<uint32_t>(written))) return false;
    }
    rx_chains_.erase(rx_chains_.begin(), rx_chains_.begin() + static_cast<ptrdiff_t>(nchains));
    rx_packets_.fetch_add(1, std::memory_order_relaxed);
    rx_bytes_.fetch_add(rx_len_ - net::kVnetHdrSize, std::memory_order_relaxed);
    rx_len_ = 0;
    return true;
}

VirtioDevice::Counters VirtioNet::counters() const {
    Counters c = {
        {"rx_packets", rx_packets_.load(std::memory_order_relaxed)},
        {"rx_bytes", rx_bytes_.load(std::memory_order_relaxed)},
        {"rx_dropped", rx_dropped_.load(std::memory_order_relaxed) + backend_->rx_dropped()},
        {"tx_packets", tx_packets_.load(std::memory_order_relaxed)},
        {"tx_bytes", tx_bytes_.load(std::memory_order_relaxed)},
        {"tx_dropped", tx_dropped_.load(std::memory_order_relaxed)},
    };
    for (auto& kv : backend_->counters()) c.push_back(std::move(kv));
    return c;
}

}  // namespace kvmsandbox
