#include "arch/x86/boot_regs.h"

namespace kvmsandbox {

kvm_segment to_kvm_segment(const x86::SegmentDesc& d) {
    kvm_segment s{};
    s.base = d.base;
    s.limit = d.limit;
    s.selector = d.selector;
    s.type = d.type;
    s.present = d.present;
    s.dpl = d.dpl;
    s.db = d.db;
    s.s = d.s;
    s.l = d.l;
    s.g = d.g;
    s.avl = d.avl;
    s.unusable = d.unusable;
    return s;
}

void apply_boot_state(const x86::BootCpuState& st, kvm_sregs& sregs, kvm_regs& regs) {
    sregs.cs = to_kvm_segment(st.cs);
    sregs.ds = to_kvm_segment(st.ds);
    sregs.es = to_kvm_segment(st.es);
    sregs.fs = to_kvm_segment(st.fs);
    sregs.gs = to_kvm_segment(st.gs);
    sregs.ss = to_kvm_segment(st.ss);
    sregs.tr = to_kvm_segment(st.tr);
    sregs.ldt = to_kvm_segment(st.ldt);
    sregs.gdt.base = st.gdt.base;
    sregs.gdt.limit = st.gdt.limit;
    sregs.idt.base = st.idt.base;
    sregs.idt.limit = st.idt.limit;
    sregs.cr0 = st.cr0;
    sregs.cr3 = st.cr3;
    sregs.cr4 = st.cr4;
    sregs.efer = st.efer;
    regs = kvm_regs{};
    regs.rip = st.rip;
    regs.rsi = st.rsi;
    regs.rsp = st.rsp;
    regs.rbp = st.rsp;
    regs.rflags = st.rflags;
}

}  // namespace kvmsandbox
