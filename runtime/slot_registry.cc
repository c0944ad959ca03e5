#include "runtime/slot_registry.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "allocator/compartment_heap.h"
#include "runtime/compartment_stack.h"

namespace mpkbox::internal {
namespace {

struct Slot {
  bool used = false;
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

}  // namespace

absl::StatusOr<SlotGrant> AcquireSlot(absl::string_view name) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  for (size_t i = 0; i < kMaxCompartments; ++i) {
    Slot& s = r.slots[i];
    if (s.used) continue;
    s.used = true;
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
  DropAllContexts(s, slot);
  s.generation = r.next_generation++;
  return s.generation;
}

void ReleaseSlot(size_t slot) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  Slot& s = r.slots[slot];
  DropAllContexts(s, slot);
  s = Slot{};
}

absl::Status PrepareContext(ThreadBlock* tb, const DomainSpec& spec) {
  absl::StatusOr<StackMapping> stack =
      MapCompartmentStack(spec.stack_bytes, spec.key, spec.name);
  if (!stack.ok()) return stack.status();
  Registry& r = GetRegistry();
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
  ctx.pkru = spec.pkru;
  ctx.top = stack->top() - 16;  // [top] holds the gate's CFI copy
  ctx.domain = spec.domain;
  ctx.stack_base = stack->base;
  ctx.stack_size = stack->size;
  ctx.policy = spec.policy;
  ctx.generation = spec.generation;
  s.threads.push_back(tb);
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

}  // namespace mpkbox::internal
