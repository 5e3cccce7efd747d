// An interrupt line as a device sees it. The VMM implements it with
// KVM_IRQ_LINE (or an irqfd); unit tests implement it with a recorder.
#pragma once

namespace kvmsandbox {

class IrqLine {
  public:
    virtual ~IrqLine() = default;
    // Level-triggered semantics: true while the device has an interrupt pending.
    virtual void set_level(bool asserted) = 0;
};

}  // namespace kvmsandbox
