// The guest-physical memory map and fixed I/O resources of an x86 guest.
// One place for all of them so loaders, ACPI tables and devices agree.
#pragma once

#include <cstdint>

namespace kvmsandbox::x86 {

// Low memory (below 1 MiB): boot structures the kernel reads once.
inline constexpr uint64_t kGdtAddr =
    0x500;  // GDT for the 64-bit entry (6 entries incl. a 16-byte TSS descriptor)
inline constexpr uint64_t kIdtAddr = 0x530;  // empty IDT (kernel installs its own); after the GDT
inline constexpr uint64_t kBootStackTop = 0x8000;    // initial rsp; kernel switches early
inline constexpr uint64_t kBootParamsAddr = 0x7000;  // struct boot_params ("zero page")
inline constexpr uint64_t kPml4Addr = 0x9000;        // identity page tables: PML4
inline constexpr uint64_t kPdptAddr = 0xa000;        //   PDPT
inline constexpr uint64_t kPdAddr =
    0xb000;  //   4 page directories (0xb000..0xefff), 4 GiB of 2 MiB pages
inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;      // bytes, including NUL
inline constexpr uint64_t kEbdaStart = 0x9fc00;       // RAM below this is usable
inline constexpr uint64_t kAcpiTablesAddr = 0xe0000;  // RSDP must be in 0xe0000..0xfffff
inline constexpr uint64_t kAcpiTablesEnd = 0x100000;
inline constexpr uint64_t kHighMemStart = 0x100000;  // 1 MiB

// Default load address for the protected-mode kernel when its preferred
// address does not fit.
inline constexpr uint64_t kKernelLoadAddr = 0x100000;

// 32-bit PCI/MMIO hole: guest RAM is split around it.
inline constexpr uint64_t kMmioHoleStart = 0xc0000000;  // 3 GiB
inline constexpr uint64_t kMmioHoleEnd = 0x100000000;   // 4 GiB
inline constexpr uint64_t kIoapicAddr = 0xfec00000;
inline constexpr uint64_t kLapicAddr = 0xfee00000;
inline constexpr uint64_t kTssAddr = 0xfffbd000;          // KVM_SET_TSS_ADDR (3 pages)
inline constexpr uint64_t kIdentityMapAddr = 0xfffbc000;  // KVM_SET_IDENTITY_MAP_ADDR (1 page)

// Legacy I/O ports and IRQs.
inline constexpr uint16_t kCom1Port = 0x3f8;
inline constexpr uint8_t kCom1Irq = 4;
inline constexpr uint16_t kI8042DataPort = 0x60;
inline constexpr uint16_t kI8042CmdPort = 0x64;
inline constexpr uint8_t kI8042KbdIrq = 1;
inline constexpr uint8_t kI8042AuxIrq = 12;
inline constexpr uint16_t kCmosPort = 0x70;  // index 0x70, data 0x71
inline constexpr uint8_t kRtcIrq = 8;

// ACPI fixed hardware (FADT points here; devices/acpi_pm implements it).
inline constexpr uint16_t kPm1aEvtPort = 0x600;  // 4 bytes: PM1 status (2), enable (2)
inline constexpr uint16_t kPm1aEvtLen = 4;
inline constexpr uint16_t kPm1aCntPort = 0x604;  // 2 bytes: PM1 control (SLP_TYP, SLP_EN, SCI_EN)
inline constexpr uint16_t kPm1aCntLen = 2;
inline constexpr uint8_t kSciIrq = 9;
// SLP_TYP value our DSDT's \_S5 package announces; writing it with SLP_EN powers off.
inline constexpr uint8_t kSlpTypS5 = 5;

// Number of IOAPIC pins of KVM's in-kernel IOAPIC.
inline constexpr uint32_t kIoapicPins = 24;
inline constexpr uint64_t kPciMmioStart = 0xe0000000, kPciMmioEnd = 0xfec00000;  // PCI BARs

}  // namespace kvmsandbox::x86
