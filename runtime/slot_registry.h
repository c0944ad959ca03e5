// Compartment slots: which index of ThreadBlock::contexts a compartment owns,
// and every thread's context (and stack) for it, so that Reset, destruction
// and thread exit each drop exactly what they must.
#ifndef MPKBOX_RUNTIME_SLOT_REGISTRY_H_
#define MPKBOX_RUNTIME_SLOT_REGISTRY_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

struct SlotGrant {
  size_t slot;
  uint64_t generation;
  uint64_t domain;
};

struct DomainSpec {
  size_t slot;
  uint64_t generation;
  uint64_t domain;
  int key;
  uint32_t pkru;
  size_t stack_bytes;
  absl::string_view name;
  const SyscallPolicy* policy;
};

// `key` is the compartment's: fault reports find it by address (KeyOfAddress).
absl::StatusOr<SlotGrant> AcquireSlot(absl::string_view name, int key);
// Drops every thread's context for the slot; returns the next generation.
uint64_t RenewSlot(size_t slot);
// Drops every thread's context for the slot, which stays taken: the
// compartment's heap can then go before the slot is handed out again.
void DropSlotContexts(size_t slot);
void ReleaseSlot(size_t slot);

// Gives tb a context (and a stack) for the domain.
absl::Status PrepareContext(ThreadBlock* tb, const DomainSpec& spec);
// Drops tb's contexts; the thread is exiting.
void ReleaseThreadContexts(ThreadBlock* tb);

// Which compartment a hardware key belongs to, for fault reports.
void SetKeyOwner(int key, absl::string_view name);
std::string KeyOwner(int key);

// True if [p, p + n) lies in one of the slot's stacks.
bool SlotStacksContain(size_t slot, uintptr_t p, size_t n);

// The key of the page at `p` if it lies in the address zone (a compartment's
// heap and images, else key 0) or in a compartment stack (guard included);
// -1 if mpkbox did not map it for a compartment. From the registry alone, so a
// fault report needs no /proc/self/smaps.
int KeyOfAddress(uintptr_t p);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_SLOT_REGISTRY_H_
