// What a compartment is created with (CompartmentOptions) and what it
// reports about its heap (CompartmentStats).
#ifndef MPKBOX_COMPARTMENT_OPTIONS_H_
#define MPKBOX_COMPARTMENT_OPTIONS_H_

#include <cstddef>
#include <functional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mpkbox/syscall_policy.h"

namespace mpkbox {

// Rights of compartment code over key-0 memory (code, libc, host globals,
// TLS, host stacks). kReadWrite isolates only trusted-key memory and is no
// boundary against malicious code: see docs/THREAT_MODEL.md.
enum class Ambient { kReadOnly, kReadWrite };

// Which of loaded code's streams a line of output came from.
enum class StdioStream { kStdout = 1, kStderr = 2 };

// Receives loaded code's output (stdout and stderr: printf, fprintf, puts,
// std::cout, ...) one line at a time, without its newline, with host rights
// on a copy in host memory; a line longer than 4096 bytes comes in pieces.
// Called on the thread that is running compartment code, from inside its
// call: it must not throw, and not call into that compartment.
using StdioSink =
    std::function<void(StdioStream stream, absl::string_view line)>;

struct CompartmentOptions {
  std::string name = {};  // shown in every status and report; defaulted if empty
  size_t heap_limit_bytes = 64 << 20;
  size_t stack_bytes = 1 << 20;  // per thread, plus a guard page
  absl::Duration call_timeout = absl::InfiniteDuration();
  Ambient ambient = Ambient::kReadOnly;
  SyscallPolicy syscalls = {};  // default: deny all
  // Where loaded code's stdout and stderr go. Empty: the host's stderr,
  // each line prefixed "[name] ", control characters escaped.
  StdioSink stdio_sink = {};
  // Bytes of output (newlines included) the sink gets over the
  // compartment's life, Resets included; the rest is dropped and counted.
  size_t stdio_budget_bytes = 1 << 20;
};

struct CompartmentStats {
  size_t bytes_in_use = 0;
  size_t peak_bytes = 0;
  size_t allocations = 0;
  size_t failed_allocations = 0;
  size_t stdio_bytes = 0;          // output loaded code sent to the sink
  size_t stdio_dropped_bytes = 0;  // output past stdio_budget_bytes
};

}  // namespace mpkbox

#endif  // MPKBOX_COMPARTMENT_OPTIONS_H_
