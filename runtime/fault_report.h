// Turns what the signal handler recorded (FaultInfo) into a FaultReport and
// a status, outside the handler: symbolizing and reading /proc are not
// async-signal-safe.
#ifndef MPKBOX_RUNTIME_FAULT_REPORT_H_
#define MPKBOX_RUNTIME_FAULT_REPORT_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "mpkbox/fault_report.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

// Names an address of code the compartment loaded (absl::Symbolize knows
// only mapped files); empty if it is not such code.
using LoadedCodeNamer = std::function<std::string(uintptr_t)>;

absl::Status BuildFaultReport(const FaultInfo& info,
                              const std::string& compartment,
                              absl::Duration timeout, FaultReport* report,
                              const LoadedCodeNamer& loaded = nullptr);

// The protection key of the page holding `addr`, -1 if it is not mapped,
// from /proc/self/smaps: the kernel's word, for tests and benchmarks. Fault
// reports use the registry instead (tens of microseconds cheaper).
int PkeyOfAddress(uintptr_t addr);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_FAULT_REPORT_H_
