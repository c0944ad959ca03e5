// The host-side state of one compartment's C library: what lives beyond a
// single request and must go at Reset and destruction (the stdio sink's
// budget, descriptors it opened). Host memory (trusted key), one per
// compartment slot, found by the libc entry from the running domain.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_LIBC_LIBC_STATE_H_
#define MPKBOX_RUNTIME_COMPARTMENT_LIBC_LIBC_STATE_H_

#include <cstddef>
#include <cstdint>
#include <string>

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
  StdioSink stdio;  // its stdout and stderr (stdio_sink.cc)
};

// The state of the compartment in `slot`, or null between compartments.
void SetLibcStateOfSlot(size_t slot, LibcState* state);
LibcState* LibcStateOfSlot(size_t slot);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_COMPARTMENT_LIBC_LIBC_STATE_H_
