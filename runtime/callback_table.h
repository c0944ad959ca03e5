// The process-wide table behind Callback stubs, on the trusted key.
#ifndef MPKBOX_RUNTIME_CALLBACK_TABLE_H_
#define MPKBOX_RUNTIME_CALLBACK_TABLE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

absl::Status InitCallbackTable();
CallbackEntry* CallbackTable();

// Binds a free stub to host_fn for calls from `domain` only; `target` is
// what host_fn calls when it is a checking wrapper.
absl::StatusOr<int> AddCallbackSlot(uint64_t domain, void* host_fn,
                                    int returns,
                                    absl::string_view compartment,
                                    void* target = nullptr);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_CALLBACK_TABLE_H_
