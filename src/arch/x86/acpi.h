// ACPI tables for the guest: RSDP, RSDT/XSDT, FADT (full, not hardware
// reduced, pointing at our PM1a event/control ports), FACS, a DSDT with just
// \_S5 so the kernel can power off, and a MADT describing the local APICs,
// the IOAPIC and the ISA interrupt overrides. All of it sits in the BIOS area
// [kAcpiTablesAddr, kAcpiTablesEnd) so kernels that scan for the RSDP find it.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/guest_memory.h"
#include "base/result.h"

namespace kvmsandbox::x86 {

inline constexpr char kAcpiOemId[] = "KVMSBX";  // 6 bytes
// Local APIC IDs are 8 bits in MADT type-0 entries; 0xff means "all", and
// the IOAPIC takes the id after the last CPU.
inline constexpr unsigned kAcpiMaxCpus = 254;

// Sum of bytes mod 256; a valid ACPI table sums to 0.
uint8_t acpi_checksum(std::span<const uint8_t> bytes);

// Writes all tables and returns the RSDP's guest address (for
// boot_params.acpi_rsdp_addr).
Result<uint64_t> write_acpi_tables(const GuestMemory& mem, unsigned num_cpus);

// Minimal AML encoder, exposed for tests.
namespace aml {
// Device(PCI0): the PCI root bridge (PNP0A03) with its resources (_CRS): bus 0,
// the config ports, all other I/O ports, and the 32-bit MMIO window where
// BARs live. Linux with ACPI interrupt routing finds PCI buses only this way.
std::vector<uint8_t> pci_root_bridge(uint64_t mmio_start, uint64_t mmio_end);
// PkgLength encoding for a package whose contents (after the PkgLength) are
// `content_len` bytes; the encoded value includes the PkgLength bytes.
std::vector<uint8_t> pkg_length(size_t content_len);
// Integer constant: ZeroOp/OneOp/BytePrefix/WordPrefix/DWordPrefix/QWordPrefix.
std::vector<uint8_t> integer(uint64_t v);
// Name(<4-char name>, Package(){ints...})
std::vector<uint8_t> name_package(std::string_view name, std::span<const uint64_t> ints);
}  // namespace aml

}  // namespace kvmsandbox::x86
