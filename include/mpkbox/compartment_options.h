// What a compartment is created with (CompartmentOptions) and what it
// reports about its heap (CompartmentStats).
#ifndef MPKBOX_COMPARTMENT_OPTIONS_H_
#define MPKBOX_COMPARTMENT_OPTIONS_H_

#include <cstddef>
#include <string>

#include "absl/time/time.h"
#include "mpkbox/syscall_policy.h"

namespace mpkbox {

// Rights of compartment code over key-0 memory (code, libc, host globals,
// TLS, host stacks). kReadWrite isolates only trusted-key memory and is no
// boundary against malicious code: see docs/THREAT_MODEL.md.
enum class Ambient { kReadOnly, kReadWrite };

struct CompartmentOptions {
  std::string name = {};  // shown in every status and report; defaulted if empty
  size_t heap_limit_bytes = 64 << 20;
  size_t stack_bytes = 1 << 20;  // per thread, plus a guard page
  absl::Duration call_timeout = absl::InfiniteDuration();
  Ambient ambient = Ambient::kReadOnly;
  SyscallPolicy syscalls = {};  // default: deny all
};

struct CompartmentStats {
  size_t bytes_in_use = 0;
  size_t peak_bytes = 0;
  size_t allocations = 0;
  size_t failed_allocations = 0;
};

}  // namespace mpkbox

#endif  // MPKBOX_COMPARTMENT_OPTIONS_H_
