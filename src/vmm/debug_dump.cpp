#include "vmm/debug_dump.h"

#include <utility>

#include <fmt/core.h>

namespace kvmsandbox {

namespace {

std::string format_segment(const char* name, const kvm_segment& s) {
    return fmt::format(
        "{:<4} sel {:#06x} base {:#018x} limit {:#010x} type {:#x} dpl {} p {} l {} "
        "db {}\n",
        name, s.selector, s.base, s.limit, s.type, s.dpl, s.present, s.l, s.db);
}

}  // namespace

std::string format_vcpu_registers(unsigned id, const kvm_regs& r, const kvm_sregs& s) {
    std::string out = fmt::format("vCPU {}:\n", id);
    out += fmt::format(
        "  rip {:#018x} rsp {:#018x} rflags {:#010x}\n"
        "  rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}\n"
        "  rsi {:#018x} rdi {:#018x} rbp {:#018x}\n"
        "  r8  {:#018x} r9  {:#018x} r10 {:#018x} r11 {:#018x}\n"
        "  r12 {:#018x} r13 {:#018x} r14 {:#018x} r15 {:#018x}\n"
        "  cr0 {:#018x} cr2 {:#018x} cr3 {:#018x} cr4 {:#018x}\n"
        "  efer {:#x} apic_base {:#x}\n",
        r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10,
        r.r11, r.r12, r.r13, r.r14, r.r15, s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.apic_base);
    for (auto [name, seg] : {std::pair{"cs", &s.cs},
                             {"ss", &s.ss},
                             {"ds", &s.ds},
                             {"es", &s.es},
                             {"fs", &s.fs},
                             {"gs", &s.gs}})
        out += "  " + format_segment(name, *seg);
    out += fmt::format("  gdt base {:#018x} limit {:#06x}  idt base {:#018x} limit {:#06x}\n",
                       s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit);
    return out;
}

}  // namespace kvmsandbox
