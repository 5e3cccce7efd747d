// Turns the architecture's boot CPU state into KVM's register structures.
#pragma once

#include <linux/kvm.h>

#include "arch/x86/cpu_boot_state.h"

namespace kvmsandbox {

kvm_segment to_kvm_segment(const x86::SegmentDesc& d);
void apply_boot_state(const x86::BootCpuState& st, kvm_sregs& sregs, kvm_regs& regs);

}  // namespace kvmsandbox
