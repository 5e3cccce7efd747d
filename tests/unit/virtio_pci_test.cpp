#include "virtio/transport/virtio_pci.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

namespace kvmsandbox {
namespace {

constexpr uint64_t kWindow = 0xe0000000;
constexpr uint64_t kWindowEnd = 0xf0000000;
constexpr uint64_t kMemSize = 1 << 20;

class FakeDevice : public VirtioDevice {
  public:
    uint16_t device_type() const override { return VIRTIO_ID_RNG; }
    std::string name() const override { return "fake"; }
    uint64_t device_features() const override { return 1ull << 0 | 1ull << 40; }
    uint16_t num_queues() const override { return 2; }
    uint16_t queue_max_size(uint16_t) const override { return 16; }
    uint32_t config_size() const override { return 8; }
    void read_config(uint32_t offset, std::span<uint8_t> data) override {
        for (size_t i = 0; i < data.size(); ++i) data[i] = cfg[offset + i];
    }
    void write_config(uint32_t offset, std::span<const uint8_t> data) override {
        for (size_t i = 0; i < data.size(); ++i) cfg[offset + i] = data[i];
    }
    Result<void> activate(uint64_t f, std::span<SplitQueue* const> q, VirtioInterrupt& i) override {
        if (fail_activate) return fail("no");
        features = f;
        queues.assign(q.begin(), q.end());
        irq = &i;
        ++activations;
        return {};
    }
    void reset() override {
        ++resets;
        queues.clear();
        irq = nullptr;
    }
    void queue_notify(uint16_t q) override { notified.push_back(q); }

    uint8_t cfg[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    bool fail_activate = false;
    uint64_t features = 0;
    std::vector<SplitQueue*> queues;
    VirtioInterrupt* irq = nullptr;
    int activations = 0, resets = 0;
    std::vector<uint16_t> notified;
};

class FakeRouter : public MsiRouter {
  public:
    void set_msi_route(uint16_t v, uint64_t addr, uint32_t data, bool masked) override {
        routes.emplace_back(v, addr, data, masked);
    }
    void signal_msi(uint16_t v) override { signals.push_back(v); }
    std::vector<std::tuple<uint16_t, uint64_t, uint32_t, bool>> routes;
    std::vector<uint16_t> signals;
};

class FakeIoEvents : public IoEventRegistrar {
  public:
    Result<void> register_notify(uint64_t gpa, uint16_t q) override {
        if (refuse) return fail("refused");
        live[gpa] = q;
        return {};
    }
    void unregister_notify(uint64_t gpa, uint16_t) override { live.erase(gpa); }
    bool refuse = false;
    std::map<uint64_t, uint16_t> live;
};

class FakeIrq : public IrqLine {
  public:
    void set_level(bool l) override { level = l; }
    bool level = false;
};

class VirtioPciTest : public ::testing::Test {
  protected:
    VirtioPciTest()
        : ram(kMemSize),
          mem({MemoryRegion{0, kMemSize, ram.data()}}),
          mapper(mmio, kWindow, kWindowEnd),
          bridge(&mapper, kWindow, kWindowEnd),
          vdev(dev, mem, &router, &ioevents, &intx, 11) {
        auto s = bridge.add_device(vdev);
        EXPECT_TRUE(s.has_value());
        slot = s.value_or(0);
        base = vdev.bar_address(0).value_or(0);
    }

    uint64_t rd(uint32_t off, size_t len) {
        uint8_t b[8] = {};
        mmio.read(base + off, std::span<uint8_t>(b, len));
        uint64_t v = 0;
        for (size_t i = 0; i < len; ++i) v |= uint64_t{b[i]} << (8 * i);
        return v;
    }
    void wr(uint32_t off, size_t len, uint64_t v) {
        uint8_t b[8];
        for (size_t i = 0; i < len; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
        mmio.write(base + off, std::span<const uint8_t>(b, len));
    }
    uint8_t status() { return static_cast<uint8_t>(rd(VIRTIO_PCI_COMMON_STATUS, 1)); }
    void set_status(uint8_t s) { wr(VIRTIO_PCI_COMMON_STATUS, 1, s); }
    uint32_t cfg(uint16_t reg, unsigned len) { return bridge.config_read(0, slot, 0, reg, len); }
    void cfg_w(uint16_t reg, unsigned len, uint32_t v) {
        bridge.config_write(0, slot, 0, reg, len, v);
    }
    // Finds a capability by ID (and virtio cfg_type for vendor ones).
    std::optional<uint16_t> find_cap(uint8_t id, uint8_t type = 0) {
        uint16_t p = cfg(pci::kCapabilityPointer, 1);
        for (int n = 0; p && n < 48; ++n) {
            if (cfg(p, 1) == id && (id != pci::kCapIdVendor || cfg(p + 3, 1) == type)) return p;
            p = cfg(p + 1, 1);
        }
        return std::nullopt;
    }
    void set_features(uint64_t f) {
        wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
        wr(VIRTIO_PCI_COMMON_GF, 4, f & 0xffffffff);
        wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
        wr(VIRTIO_PCI_COMMON_GF, 4, f >> 32);
    }
    void setup_queue(uint16_t q, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used,
                     uint16_t vector = VIRTIO_MSI_NO_VECTOR) {
        wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
        wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, size);
        wr(VIRTIO_PCI_COMMON_Q_DESCLO, 4, desc & 0xffffffff);
        wr(VIRTIO_PCI_COMMON_Q_DESCLO + 4, 4, desc >> 32);
        wr(VIRTIO_PCI_COMMON_Q_AVAILLO, 4, avail & 0xffffffff);
        wr(VIRTIO_PCI_COMMON_Q_AVAILLO + 4, 4, avail >> 32);
        wr(VIRTIO_PCI_COMMON_Q_USEDLO, 4, used & 0xffffffff);
        wr(VIRTIO_PCI_COMMON_Q_USEDLO + 4, 4, used >> 32);
        wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, vector);
        wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
    }
    // The Linux driver's sequence up to (not including) DRIVER_OK.
    void negotiate(uint64_t features = virtio::bit(VIRTIO_F_VERSION_1) |
                                       virtio::bit(VIRTIO_RING_F_EVENT_IDX) | 1) {
        set_status(0);
        ASSERT_EQ(status(), 0);
        set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
        set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
        set_features(features);
        set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                   VIRTIO_CONFIG_S_FEATURES_OK);
    }
    void full_init() {
        negotiate();
        ASSERT_TRUE(status() & VIRTIO_CONFIG_S_FEATURES_OK);
        setup_queue(0, 8, 0x1000, 0x2000, 0x3000, 1);
        setup_queue(1, 16, 0x4000, 0x5000, 0x6000, 2);
        set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                   VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
    }
    void enable_msix() {
        auto p = find_cap(pci::kCapIdMsix);
        ASSERT_TRUE(p);
        cfg_w(*p + 2, 2, 0x8000);
    }
    void program_vector(uint16_t v, uint64_t addr, uint32_t data, bool masked) {
        const uint32_t e = VirtioPciDevice::kMsixTableOffset + 16u * v;
        wr(e, 4, addr & 0xffffffff);
        wr(e + 4, 4, addr >> 32);
        wr(e + 8, 4, data);
        wr(e + 12, 4, masked ? 1 : 0);
    }

    std::vector<uint8_t> ram;
    GuestMemory mem;
    Bus mmio{"MMIO"};
    BusBarMapper mapper;
    PciHostBridge bridge;
    FakeDevice dev;
    FakeRouter router;
    FakeIoEvents ioevents;
    FakeIrq intx;
    VirtioPciDevice vdev;
    uint8_t slot = 0;
    uint64_t base = 0;
};

TEST_F(VirtioPciTest, PciIdentityAndCapabilities) {
    EXPECT_EQ(cfg(pci::kVendorId, 2), 0x1af4u);
    EXPECT_EQ(cfg(pci::kDeviceId, 2), 0x1040u + VIRTIO_ID_RNG);
    EXPECT_GE(cfg(pci::kRevisionId, 1), 1u);
    EXPECT_EQ(cfg(pci::kStatus, 2) & pci::kStatusCapList, pci::kStatusCapList);
    EXPECT_EQ(cfg(pci::kInterruptPin, 1), 1u);
    EXPECT_EQ(cfg(pci::kInterruptLine, 1), 11u);
    ASSERT_NE(base, 0u);

    struct Want {
        uint8_t type;
        uint32_t offset;
    };
    for (Want w : {Want{1, VirtioPciDevice::kCommonOffset}, Want{2, VirtioPciDevice::kNotifyOffset},
                   Want{3, VirtioPciDevice::kIsrOffset}, Want{4, VirtioPciDevice::kDeviceCfgOffset},
                   Want{5, 0}}) {
        auto p = find_cap(pci::kCapIdVendor, w.type);
        ASSERT_TRUE(p) << int(w.type);
        EXPECT_EQ(cfg(*p + 4, 1), 0u);  // BAR 0
        EXPECT_EQ(cfg(*p + 8, 4), w.offset);
        if (w.type == 2) {
            EXPECT_EQ(cfg(*p + 2, 1), 20u);  // cap_len with the multiplier
            EXPECT_EQ(cfg(*p + 16, 4), VirtioPciDevice::kNotifyMultiplier);
            EXPECT_GE(cfg(*p + 12, 4), 2u * VirtioPciDevice::kNotifyMultiplier);
        }
        if (w.type == 4) {
            EXPECT_EQ(cfg(*p + 12, 4), 8u);
        }
    }
    auto m = find_cap(pci::kCapIdMsix);
    ASSERT_TRUE(m);
    EXPECT_EQ(cfg(*m + 2, 2), 2u);  // 3 vectors: config + 2 queues
    EXPECT_EQ(cfg(*m + 4, 4), VirtioPciDevice::kMsixTableOffset);
    EXPECT_EQ(cfg(*m + 8, 4), VirtioPciDevice::kMsixPbaOffset);
    // Capabilities are read-only.
    auto common = find_cap(pci::kCapIdVendor, 1);
    cfg_w(*common + 8, 4, 0x1234);
    EXPECT_EQ(cfg(*common + 8, 4), VirtioPciDevice::kCommonOffset);
}

TEST_F(VirtioPciTest, FeaturesOffered) {
    wr(VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_DF, 4), (1u << 0) | (1u << 28) | (1u << 29));
    wr(VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_DF, 4), (1u << 0) | (1u << 8));  // VERSION_1, bit 40
    wr(VIRTIO_PCI_COMMON_DFSELECT, 4, 7);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_DF, 4), 0u);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_NUMQ, 2), 2u);
}

TEST_F(VirtioPciTest, FullInitSequenceActivatesDevice) {
    full_init();
    EXPECT_EQ(status(), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                            VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
    EXPECT_TRUE(vdev.active());
    ASSERT_EQ(dev.activations, 1);
    EXPECT_EQ(dev.features,
              virtio::bit(VIRTIO_F_VERSION_1) | virtio::bit(VIRTIO_RING_F_EVENT_IDX) | 1);
    ASSERT_EQ(dev.queues.size(), 2u);
    EXPECT_TRUE(dev.queues[0]->ready());
    EXPECT_EQ(dev.queues[0]->size(), 8);
    EXPECT_TRUE(dev.queues[0]->event_idx());
    EXPECT_EQ(dev.queues[1]->size(), 16);

    // Read back queue registers.
    wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 16u);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1u);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_NOFF, 2), 1u);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0x4000u);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_AVAILLO, 8), 0x5000u);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), 2u);

    // A request through queue 0 reaches the device's SplitQueue.
    vring_desc d{0x8000, 16, 0, 0};
    ASSERT_TRUE(mem.write_obj(0x1000, d));
    ASSERT_TRUE(mem.write_obj<uint16_t>(0x2004, 0));
    ASSERT_TRUE(mem.write_obj<uint16_t>(0x2002, 1));
    auto c = dev.queues[0]->pop();
    ASSERT_TRUE(c.has_value() && c->has_value());
    EXPECT_EQ((*c)->readable_len, 16u);

    // Live queues cannot be reconfigured.
    wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
    wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 4);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 8u);

    // Reset tears everything down.
    set_status(0);
    EXPECT_EQ(status(), 0);
    EXPECT_EQ(dev.resets, 1);
    EXPECT_FALSE(vdev.active());
    wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0u);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 16u);
    EXPECT_EQ(vdev.driver_features(), 0u);
}

TEST_F(VirtioPciTest, FeaturesWithoutVersion1Refused) {
    negotiate(/*features=*/1);
    EXPECT_FALSE(status() & VIRTIO_CONFIG_S_FEATURES_OK);
    EXPECT_TRUE(status() & VIRTIO_CONFIG_S_DRIVER);
    // DRIVER_OK without FEATURES_OK does not activate.
    set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
    EXPECT_FALSE(status() & VIRTIO_CONFIG_S_DRIVER_OK);
    EXPECT_EQ(dev.activations, 0);
}

TEST_F(VirtioPciTest, UnofferedFeatureRefused) {
    negotiate(virtio::bit(VIRTIO_F_VERSION_1) | (1ull << 5));
    EXPECT_FALSE(status() & VIRTIO_CONFIG_S_FEATURES_OK);
}

TEST_F(VirtioPciTest, FeaturesFrozenAfterFeaturesOk) {
    negotiate();
    ASSERT_TRUE(status() & VIRTIO_CONFIG_S_FEATURES_OK);
    set_features(virtio::bit(VIRTIO_F_VERSION_1) | (1ull << 5));
    EXPECT_EQ(vdev.driver_features(),
              virtio::bit(VIRTIO_F_VERSION_1) | virtio::bit(VIRTIO_RING_F_EVENT_IDX) | 1);
}

TEST_F(VirtioPciTest, StatusBitsCannotBeCleared) {
    negotiate();
    set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);  // drops DRIVER and FEATURES_OK: invalid
    EXPECT_EQ(status(),
              VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
}

TEST_F(VirtioPciTest, QueueSelectOutOfRangeIgnored) {
    negotiate();
    wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, 7);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 0u);  // no such queue
    wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 4);
    wr(VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x1000);
    wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0u);
    for (uint16_t q = 0; q < 2; ++q) {
        wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
        EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 16u);
        EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0u);
        EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0u);
    }
    EXPECT_EQ(status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
}

TEST_F(VirtioPciTest, QueueSizeAndVectorValidated) {
    negotiate();
    wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
    wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 3);  // not a power of two
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 16u);
    wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 32);  // above the maximum
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 16u);
    wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 0);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 16u);
    wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 4);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 4u);
    wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 3);  // only 3 vectors: 0..2
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    wr(VIRTIO_PCI_COMMON_MSIX, 2, 0x100);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    wr(VIRTIO_PCI_COMMON_MSIX, 2, 0);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_MSIX, 2), 0u);
}

TEST_F(VirtioPciTest, BadRingsSetNeedsReset) {
    negotiate();
    setup_queue(0, 8, kMemSize - 16, 0x2000, 0x3000);  // descriptor table outside RAM
    wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0u);
    EXPECT_TRUE(status() & VIRTIO_CONFIG_S_NEEDS_RESET);
    set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
               VIRTIO_CONFIG_S_DRIVER_OK);
    EXPECT_EQ(dev.activations, 0);
    set_status(0);
    EXPECT_EQ(status(), 0);
}

TEST_F(VirtioPciTest, FailedActivationSetsNeedsReset) {
    dev.fail_activate = true;
    full_init();
    EXPECT_TRUE(status() & VIRTIO_CONFIG_S_NEEDS_RESET);
    EXPECT_FALSE(vdev.active());
}

TEST_F(VirtioPciTest, DeviceConfigBounded) {
    EXPECT_EQ(rd(VirtioPciDevice::kDeviceCfgOffset, 4), 0x04030201u);
    EXPECT_EQ(rd(VirtioPciDevice::kDeviceCfgOffset + 6, 2), 0x0807u);
    EXPECT_EQ(rd(VirtioPciDevice::kDeviceCfgOffset + 6, 4), 0u);  // past the end
    wr(VirtioPciDevice::kDeviceCfgOffset + 8, 4, 0xffffffff);     // dropped
    wr(VirtioPciDevice::kDeviceCfgOffset + 0x100, 4, 0xffffffff);
    wr(VirtioPciDevice::kDeviceCfgOffset, 1, 0x99);
    EXPECT_EQ(dev.cfg[0], 0x99);
}

TEST_F(VirtioPciTest, MsixProgrammingReachesRouter) {
    full_init();
    enable_msix();
    EXPECT_TRUE(router.routes.empty());  // all vectors masked and never programmed

    program_vector(1, 0xfee00000, 0x41, false);
    ASSERT_FALSE(router.routes.empty());
    EXPECT_EQ(router.routes.back(),
              std::make_tuple(uint16_t{1}, uint64_t{0xfee00000}, 0x41u, false));
    EXPECT_EQ(rd(VirtioPciDevice::kMsixTableOffset + 16 + 8, 4), 0x41u);

    // Queue 0 uses vector 1.
    dev.irq->signal_queue(0);
    ASSERT_EQ(router.signals.size(), 1u);
    EXPECT_EQ(router.signals[0], 1);

    // Masked: the interrupt is held in the PBA and fires on unmask.
    wr(VirtioPciDevice::kMsixTableOffset + 16 + 12, 4, 1);
    EXPECT_EQ(std::get<3>(router.routes.back()), true);
    dev.irq->signal_queue(0);
    EXPECT_EQ(router.signals.size(), 1u);
    EXPECT_EQ(rd(VirtioPciDevice::kMsixPbaOffset, 8), 0b10u);
    wr(VirtioPciDevice::kMsixTableOffset + 16 + 12, 4, 0);
    EXPECT_EQ(router.signals.size(), 2u);
    EXPECT_EQ(rd(VirtioPciDevice::kMsixPbaOffset, 8), 0u);
    EXPECT_EQ(std::get<3>(router.routes.back()), false);

    // Function mask masks every vector.
    auto m = find_cap(pci::kCapIdMsix);
    cfg_w(*m + 2, 2, 0xc000);
    EXPECT_EQ(std::get<3>(router.routes.back()), true);
    cfg_w(*m + 2, 2, 0x8000);
    EXPECT_EQ(std::get<3>(router.routes.back()), false);

    // Out-of-range entries and odd sizes are ignored; the table is not overrun.
    const size_t before = router.routes.size();
    wr(VirtioPciDevice::kMsixTableOffset + 16 * 3, 4, 0xfee00000);
    wr(VirtioPciDevice::kMsixTableOffset + 16 + 2, 2, 0xffff);
    EXPECT_EQ(router.routes.size(), before);
    EXPECT_EQ(rd(VirtioPciDevice::kMsixTableOffset + 16 * 3, 4), 0u);
}

TEST_F(VirtioPciTest, MsixBogusAddressStaysMasked) {
    full_init();
    enable_msix();
    program_vector(2, 0x12345000, 0x41, false);  // not an APIC address
    dev.irq->signal_queue(1);
    EXPECT_TRUE(router.signals.empty());
    EXPECT_EQ(rd(VirtioPciDevice::kMsixPbaOffset, 1), 0b100u);
}

TEST_F(VirtioPciTest, ConfigChangeUsesConfigVector) {
    full_init();
    enable_msix();
    wr(VIRTIO_PCI_COMMON_MSIX, 2, 0);
    program_vector(0, 0xfee00000, 0x30, false);
    const uint64_t gen = rd(VIRTIO_PCI_COMMON_CFGGENERATION, 1);
    dev.irq->signal_config();
    EXPECT_EQ(rd(VIRTIO_PCI_COMMON_CFGGENERATION, 1), (gen + 1) & 0xff);
    ASSERT_EQ(router.signals.size(), 1u);
    EXPECT_EQ(router.signals[0], 0);
}

TEST_F(VirtioPciTest, IntxAndIsrWithoutMsix) {
    full_init();
    dev.irq->signal_queue(0);
    EXPECT_TRUE(intx.level);
    EXPECT_TRUE(cfg(pci::kStatus, 2) & pci::kStatusInterrupt);
    EXPECT_EQ(rd(VirtioPciDevice::kIsrOffset, 1), 1u);  // read clears
    EXPECT_FALSE(intx.level);
    EXPECT_EQ(rd(VirtioPciDevice::kIsrOffset, 1), 0u);
    dev.irq->signal_config();
    EXPECT_EQ(rd(VirtioPciDevice::kIsrOffset, 1), 2u);
    // INTx disable in the command register keeps the line low.
    cfg_w(pci::kCommand, 2, cfg(pci::kCommand, 2) | pci::kCommandIntxDisable);
    dev.irq->signal_queue(1);
    EXPECT_FALSE(intx.level);
    EXPECT_EQ(rd(VirtioPciDevice::kIsrOffset, 1), 1u);
}

TEST_F(VirtioPciTest, NeedsResetFromDevice) {
    full_init();
    dev.irq->set_needs_reset();
    EXPECT_TRUE(status() & VIRTIO_CONFIG_S_NEEDS_RESET);
    EXPECT_EQ(rd(VirtioPciDevice::kIsrOffset, 1), 2u);  // config change notification
}

TEST_F(VirtioPciTest, NotifyThroughMmio) {
    full_init();
    wr(VirtioPciDevice::kNotifyOffset + 4, 2, 1);
    wr(VirtioPciDevice::kNotifyOffset, 2, 0);
    wr(VirtioPciDevice::kNotifyOffset + 8, 2, 2);  // no queue 2
    wr(VirtioPciDevice::kNotifyOffset + 2, 2, 0);  // not a register
    EXPECT_EQ(dev.notified, (std::vector<uint16_t>{1, 0}));
}

TEST_F(VirtioPciTest, IoeventfdsFollowTheBar) {
    ASSERT_EQ(ioevents.live.size(), 2u);
    EXPECT_EQ(ioevents.live.at(base + VirtioPciDevice::kNotifyOffset), 0);
    EXPECT_EQ(ioevents.live.at(base + VirtioPciDevice::kNotifyOffset + 4), 1);
    EXPECT_EQ(vdev.notify_address(1), base + VirtioPciDevice::kNotifyOffset + 4);

    const uint64_t moved = base + 0x100000;
    cfg_w(pci::kBar0, 4, static_cast<uint32_t>(moved));
    EXPECT_EQ(vdev.bar_address(0), moved);
    ASSERT_EQ(ioevents.live.size(), 2u);
    EXPECT_EQ(ioevents.live.at(moved + VirtioPciDevice::kNotifyOffset + 4), 1);

    cfg_w(pci::kCommand, 2, 0);  // decoding off: no ioeventfds
    EXPECT_TRUE(ioevents.live.empty());
    EXPECT_FALSE(vdev.notify_address(0));
}

TEST_F(VirtioPciTest, PciCfgCapabilityWindow) {
    auto p = find_cap(pci::kCapIdVendor, 5);
    ASSERT_TRUE(p);
    cfg_w(*p + 4, 1, 0);                       // BAR 0
    cfg_w(*p + 8, 4, VIRTIO_PCI_COMMON_NUMQ);  // offset
    cfg_w(*p + 12, 4, 2);                      // length
    EXPECT_EQ(cfg(*p + 16, 2), 2u);            // num_queues through config space
    cfg_w(*p + 8, 4, VIRTIO_PCI_COMMON_STATUS);
    cfg_w(*p + 12, 4, 1);
    cfg_w(*p + 16, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    EXPECT_EQ(status(), VIRTIO_CONFIG_S_ACKNOWLEDGE);
    cfg_w(*p + 8, 4, 0xfffffff0);  // outside the BAR: nothing happens
    cfg_w(*p + 16, 1, 0xff);
}

TEST_F(VirtioPciTest, GarbageAccessesAreHarmless) {
    for (uint32_t off = 0; off < VirtioPciDevice::kBarSize; off += 3) {
        for (size_t len : {1, 2, 3, 4, 8}) {
            if (off + len > VirtioPciDevice::kBarSize) continue;
            if (off >= VIRTIO_PCI_COMMON_STATUS && off <= VIRTIO_PCI_COMMON_STATUS + 1) continue;
            rd(off, len);
            wr(off, len, 0xffffffffffffffffull);
        }
    }
    SUCCEED();
}

}  // namespace
}  // namespace kvmsandbox
