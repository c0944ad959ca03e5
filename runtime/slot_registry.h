// Compartment slots: which index of ThreadBlock::contexts a compartment owns,
// and every thread's context (and stack) for it, so that Reset, destruction
// and thread exit each drop exactly what they must.
//
// It is also the key cache: a compartment holds a hardware key only while
// the cache gives it one. A slot's first call after it lost its key (or
// never had one) takes a free key, else evicts the least recently entered
// compartment that no thread is in, is entering or is suspended in, moving
// both compartments' memory with pkey_mprotect (docs/INTERNALS.md, "Key
// virtualisation").
#ifndef MPKBOX_RUNTIME_SLOT_REGISTRY_H_
#define MPKBOX_RUNTIME_SLOT_REGISTRY_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mpkbox/compartment_options.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

struct SlotGrant {
  size_t slot;
  uint64_t generation;
  uint64_t domain;
};

struct DomainSpec {
  size_t slot;
  uint64_t domain;
  size_t stack_bytes;
  absl::string_view name;
  const SyscallPolicy* policy;
};

// A slot with no hardware key yet. `generation` is the compartment's: the
// cache changes it (unless it is 0) whenever the compartment loses its key,
// so every thread's context for it goes stale. Every Call sets
// `referenced`; the cache's clock clears it (a second chance).
absl::StatusOr<SlotGrant> AcquireSlot(absl::string_view name, Ambient ambient,
                                      std::atomic<uint64_t>* generation,
                                      std::atomic<bool>* referenced);
// Drops every thread's context for the slot; returns the next generation.
uint64_t RenewSlot(size_t slot);
// Drops every thread's context for the slot, which stays taken: the
// compartment's heap can then go before the slot is handed out again.
void DropSlotContexts(size_t slot);
// Frees the slot and its hardware key, if it holds one: no page may carry
// the key any more.
void ReleaseSlot(size_t slot);

// Gives the slot a key if one is free (no eviction): a new compartment.
void TakeFreeKey(size_t slot);
// While pinned (Reset, destruction) the cache never evicts the slot.
void PinSlot(size_t slot);
void UnpinSlot(size_t slot);

// Call's slow path: gives the slot a hardware key (evicting if it must,
// waiting a bounded time while every key is in use) and tb a current
// context and stack for it. tb->pending_ctx must already name that context
// (it keeps the slot from eviction until the call returns).
absl::Status EnterSlot(ThreadBlock* tb, const DomainSpec& spec);
// Drops tb's contexts; the thread is exiting.
void ReleaseThreadContexts(ThreadBlock* tb);

// The slot's hardware key and PKRU now; -1 and 0 while it holds none.
int SlotKey(size_t slot);
uint32_t SlotPkru(size_t slot);

struct KeyCacheStats {
  uint64_t misses = 0;     // a key given to a compartment without one
  uint64_t evictions = 0;  // a key taken from another compartment
  uint64_t waits = 0;      // every key was in use: the caller waited
  uint64_t retags = 0;     // pkey_mprotect calls made by misses and evictions
};
KeyCacheStats GetKeyCacheStats();

// Which compartment holds a hardware key now, for fault reports.
std::string KeyOwner(int key);
// The compartment whose heap, images or stacks hold `p`, else "".
std::string CompartmentOfAddress(uintptr_t p);

// True if [p, p + n) lies in one of the slot's stacks.
bool SlotStacksContain(size_t slot, uintptr_t p, size_t n);

// The key of the page at `p` if it lies in the address zone (a compartment's
// heap and images, else key 0) or in a compartment stack (guard included);
// -1 if mpkbox did not map it for a compartment. From the registry alone, so a
// fault report needs no /proc/self/smaps.
int KeyOfAddress(uintptr_t p);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_SLOT_REGISTRY_H_
