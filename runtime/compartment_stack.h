// A compartment's stack for one thread: tagged with the compartment's key,
// with a PROT_NONE guard page (same key) below it.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_STACK_H_
#define MPKBOX_RUNTIME_COMPARTMENT_STACK_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mpkbox::internal {

inline constexpr size_t kGuardBytes = 4096;

struct StackMapping {
  uintptr_t base = 0;  // the guard page
  size_t size = 0;     // guard included
  uintptr_t top() const { return base + size; }
};

absl::StatusOr<StackMapping> MapCompartmentStack(size_t stack_bytes, int key,
                                                 absl::string_view name);
void UnmapCompartmentStack(const StackMapping& stack);
// Clears the stack: it reads as zeros again (a Reset keeps the mapping, and
// its key, rather than unmapping and mapping a new one). The top
// kScrubInPlaceBytes are zeroed in place, the pages below dropped. False if
// it could not, and unmapped the stack instead. The caller's PKRU must
// allow writes with the stack's key.
inline constexpr size_t kScrubInPlaceBytes = 8192;
bool ScrubCompartmentStack(const StackMapping& stack);
// The size MapCompartmentStack gives a stack of `stack_bytes`.
size_t CompartmentStackSize(size_t stack_bytes);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_COMPARTMENT_STACK_H_
