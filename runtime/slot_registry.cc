#include "runtime/slot_registry.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "allocator/address_zone.h"
#include "allocator/compartment_heap.h"
#include "runtime/compartment_stack.h"

namespace mpkbox::internal {
namespace {

struct Slot {
  bool used = false;
  int key = -1;
  uint64_t generation = 0;
  std::vector<ThreadBlock*> threads;  // those with a live context here
};

struct Registry {
  absl::Mutex mu;
  Slot slots[kMaxCompartments] ABSL_GUARDED_BY(mu);
  uint64_t next_generation ABSL_GUARDED_BY(mu) = 1;
  uint64_t next_domain ABSL_GUARDED_BY(mu) = 1;
  std::string key_owner[16] ABSL_GUARDED_BY(mu);
};

Registry& GetRegistry() {
  static Registry* registry = new Registry;
  return *registry;
}

void DropContext(ThreadBlock* tb, size_t index) {
  ReleaseHeapThread(tb, index);
  CallContext& ctx = tb->contexts[index];
  UnmapCompartmentStack({ctx.stack_base, ctx.stack_size});
  ctx = CallContext{};
}

void DropAllContexts(Slot& slot, size_t index) {
  for (ThreadBlock* tb : slot.threads) DropContext(tb, index);
  slot.threads.clear();
}

// For a Reset: each thread's context goes stale (its generation is gone)
// but keeps its stack, zeroed, for the next PrepareContext of that thread.
void StaleAllContexts(Slot& slot, size_t index) {
  for (ThreadBlock* tb : slot.threads) {
    ReleaseHeapThread(tb, index);
    CallContext& ctx = tb->contexts[index];
    const StackMapping stack{ctx.stack_base, ctx.stack_size};
    ctx = CallContext{};
    if (ScrubCompartmentStack(stack)) {
      ctx.stack_base = stack.base;
      ctx.stack_size = stack.size;
    }
  }
}

// The context's stack is set; the rest comes from the domain.
void Activate(CallContext& ctx, const DomainSpec& spec) {
  ctx.pkru = spec.pkru;
  ctx.top = ctx.stack_base + ctx.stack_size - 16;  // [top]: the gate's CFI copy
  ctx.domain = spec.domain;
  ctx.policy = spec.policy;
  ctx.generation = spec.generation;
}

bool TakeKeptStack(Slot& s, ThreadBlock* tb, const DomainSpec& spec)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {  // the caller holds the registry lock
  CallContext& ctx = tb->contexts[spec.slot];
  if (!s.used || s.generation != spec.generation || ctx.stack_base == 0 ||
      ctx.stack_size != CompartmentStackSize(spec.stack_bytes) ||
      std::find(s.threads.begin(), s.threads.end(), tb) == s.threads.end()) {
    return false;
  }
  if (ctx.generation != spec.generation) Activate(ctx, spec);
  return true;
}

}  // namespace

absl::StatusOr<SlotGrant> AcquireSlot(absl::string_view name, int key) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  for (size_t i = 0; i < kMaxCompartments; ++i) {
    Slot& s = r.slots[i];
    if (s.used) continue;
    s.used = true;
    s.key = key;
    s.generation = r.next_generation++;
    return SlotGrant{i, s.generation, (r.next_domain++ << kDomainSlotBits) | i};
  }
  return absl::ResourceExhaustedError(
      absl::StrFormat("compartment '%s': %u compartments are alive already",
                      name, kMaxCompartments));
}

uint64_t RenewSlot(size_t slot) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  Slot& s = r.slots[slot];
  StaleAllContexts(s, slot);
  s.generation = r.next_generation++;
  return s.generation;
}

void DropSlotContexts(size_t slot) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  DropAllContexts(r.slots[slot], slot);
}

void ReleaseSlot(size_t slot) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  Slot& s = r.slots[slot];
  DropAllContexts(s, slot);
  s = Slot{};
}

absl::Status PrepareContext(ThreadBlock* tb, const DomainSpec& spec) {
  Registry& r = GetRegistry();
  {
    // A stack kept (zeroed) by a Reset of this slot is this thread's again.
    absl::MutexLock lock(&r.mu);
    if (TakeKeptStack(r.slots[spec.slot], tb, spec)) return absl::OkStatus();
  }
  absl::StatusOr<StackMapping> stack =
      MapCompartmentStack(spec.stack_bytes, spec.key, spec.name);
  if (!stack.ok()) return stack.status();
  absl::MutexLock lock(&r.mu);
  Slot& s = r.slots[spec.slot];
  CallContext& ctx = tb->contexts[spec.slot];
  if (!s.used || s.generation != spec.generation) {
    UnmapCompartmentStack(*stack);
    return absl::FailedPreconditionError(absl::StrFormat(
        "compartment '%s' was reset or destroyed during the call", spec.name));
  }
  if (ctx.generation == spec.generation) {  // another path prepared it
    UnmapCompartmentStack(*stack);
    return absl::OkStatus();
  }
  UnmapCompartmentStack({ctx.stack_base, ctx.stack_size});  // a stale one
  ctx.stack_base = stack->base;
  ctx.stack_size = stack->size;
  Activate(ctx, spec);
  if (std::find(s.threads.begin(), s.threads.end(), tb) == s.threads.end()) {
    s.threads.push_back(tb);
  }
  return absl::OkStatus();
}

void ReleaseThreadContexts(ThreadBlock* tb) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  for (size_t i = 0; i < kMaxCompartments; ++i) {
    Slot& s = r.slots[i];
    auto it = std::find(s.threads.begin(), s.threads.end(), tb);
    if (it == s.threads.end()) continue;
    DropContext(tb, i);
    s.threads.erase(it);
  }
}

void SetKeyOwner(int key, absl::string_view name) {
  if (key < 0 || key >= 16) return;
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  r.key_owner[key] = std::string(name);
}

std::string KeyOwner(int key) {
  if (key < 0 || key >= 16) return "";
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  return r.key_owner[key];
}

bool SlotStacksContain(size_t slot, uintptr_t p, size_t n) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  for (ThreadBlock* tb : r.slots[slot].threads) {
    const CallContext& ctx = tb->contexts[slot];
    uintptr_t lo = ctx.stack_base + kGuardBytes;
    uintptr_t hi = ctx.stack_base + ctx.stack_size;
    if (p >= lo && p <= hi && n <= hi - p) return true;
  }
  return false;
}

int KeyOfAddress(uintptr_t p) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  if (InZone(p)) {
    // A used slot's heap outlives this lock (destruction releases the slot
    // first); the rest of the zone is the PROT_NONE reservation, key 0.
    const size_t window = WindowOf(p);
    if (window >= kMaxCompartments || !r.slots[window].used) return 0;
    const CompartmentHeap* heap = HeapOfSlot(window);
    return heap != nullptr && heap->Contains(p, 1) ? r.slots[window].key : 0;
  }
  for (size_t i = 0; i < kMaxCompartments; ++i) {
    for (ThreadBlock* tb : r.slots[i].threads) {
      const CallContext& ctx = tb->contexts[i];
      if (p - ctx.stack_base < ctx.stack_size) return r.slots[i].key;
    }
  }
  return -1;
}

}  // namespace mpkbox::internal
