// `kvmsandbox debug`: a vCPU's registers as text, in the layout the user
// reads (general registers, control registers, segments, descriptor tables).
#pragma once

#include <linux/kvm.h>

#include <string>

namespace kvmsandbox {

std::string format_vcpu_registers(unsigned id, const kvm_regs& r, const kvm_sregs& s);

}  // namespace kvmsandbox
