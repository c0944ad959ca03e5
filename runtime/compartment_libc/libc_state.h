// The host-side state of one compartment's C library: what lives beyond a
// single request and must go at Reset and destruction (the stdio sink's
// budget, descriptors it opened). Host memory (trusted key), one per
// compartment slot, found by the libc entry from the running domain.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_LIBC_LIBC_STATE_H_
#define MPKBOX_RUNTIME_COMPARTMENT_LIBC_LIBC_STATE_H_

#include <cstddef>
#include <atomic>
#include <cstdint>
#include <map>
#include <functional>
#include <string>

#include "absl/status/status.h"

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "mpkbox/compartment_options.h"
#include "runtime/compartment_libc/stdio.h"

namespace mpkbox::internal {

struct LibcState {
  LibcState(uint64_t domain, const CompartmentOptions& options);
  ~LibcState();  // what Reset releases, released

  // Drops what the compartment's code acquired (its descriptors, ...): the
  // compartment is reset.
  void Reset();

  const uint64_t domain;
  const std::string name;
  const CompartmentOptions& options;  // the Compartment's; outlives this
  absl::Mutex mu;

  // The compartment's anonymous mappings (memory.cc), by start: served from
  // its heap, the only memory its munmap, mremap, mprotect and madvise
  // reach. They go with the heap at Reset; only the record is dropped here.
  struct Mapping {
    size_t length;     // what munmap must name: whole pages
    size_t allocated;  // what the heap gave (mremap shrinks in place)
  };
  std::map<uintptr_t, Mapping> mappings ABSL_GUARDED_BY(mu);
  StdioSink stdio;  // its stdout and stderr (stdio_sink.cc)
  // Runs fn inside the compartment on this thread (set by
  // Compartment::Create): thread keys' destructors at a thread's exit.
  std::function<absl::Status(void (*)())> call_inside;
  // Set, under LibcExitMutex, when the compartment's destruction begins.
  std::atomic<bool> retired{false};
  // Descriptors its code opened (files.cc), each with the normalised path it
  // was granted as. Readers hold `mu` shared while they use one, so close
  // cannot hand its number to the host mid-read.
  absl::flat_hash_map<int, std::string> files ABSL_GUARDED_BY(mu);
};

// Held by the Reset and the destruction of the compartment in `slot`, and
// by a thread's exit while it runs code inside that compartment, so that
// neither happens during the other.
absl::Mutex& LibcExitMutex(size_t slot);

// The state of the compartment in `slot`, or null between compartments.
void SetLibcStateOfSlot(size_t slot, LibcState* state);
LibcState* LibcStateOfSlot(size_t slot);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_COMPARTMENT_LIBC_LIBC_STATE_H_
