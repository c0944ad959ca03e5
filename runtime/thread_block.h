// Per-thread set-up: the ThreadBlock and SelectorPage the gate uses, and the
// one-time preparation of a thread before its first entry into a compartment.
#ifndef MPKBOX_RUNTIME_THREAD_BLOCK_H_
#define MPKBOX_RUNTIME_THREAD_BLOCK_H_

#include "absl/status/statusor.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

// This thread's block, created (and the thread prepared) on first use.
absl::StatusOr<ThreadBlock*> EnsureThreadBlock();


}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_THREAD_BLOCK_H_
