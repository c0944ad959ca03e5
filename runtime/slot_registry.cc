#include "runtime/slot_registry.h"

#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "allocator/address_zone.h"
#include "allocator/compartment_heap.h"
#include "allocator/heap_cache.h"
#include "runtime/compartment_stack.h"
#include "runtime/keys/pku.h"
#include "runtime/testing_switches.h"

namespace mpkbox::internal {
namespace {

// How long a call waits for a key while every one is held by a compartment
// some thread is in: long enough to ride out a burst, short enough that a
// host whose threads wait on each other gets an error rather than a hang.
constexpr absl::Duration kKeyWait = absl::Seconds(2);

struct Slot {
  bool used = false;
  int key = -1;       // hardware key, -1 while it has none (evicted)
  uint32_t pkru = 0;  // valid while key >= 0
  Ambient ambient = Ambient::kReadOnly;
  uint64_t generation = 0;
  uint64_t domain = 0;
  uint64_t last_use = 0;  // the cache's clock at its last slow-path entry
  int pins = 0;
  std::atomic<uint64_t>* call_generation = nullptr;  // the Compartment's
  std::atomic<bool>* referenced = nullptr;           // the Compartment's
  std::string name;
  std::vector<ThreadBlock*> threads;  // those with a live context here
};

struct Registry {
  absl::Mutex mu;
  Slot slots[kMaxCompartments] ABSL_GUARDED_BY(mu);
  uint64_t next_generation ABSL_GUARDED_BY(mu) = 1;
  uint64_t next_domain ABSL_GUARDED_BY(mu) = 1;
  int key_slot[kNumKeys] ABSL_GUARDED_BY(mu);  // holder of each key, or -1
  uint64_t clock ABSL_GUARDED_BY(mu) = 0;
  // pkey_alloc failed and the registry has freed no key since (it frees
  // every compartment key): a miss goes straight to eviction, without the
  // failing syscall and its message.
  bool keys_exhausted ABSL_GUARDED_BY(mu) = false;
  KeyCacheStats stats ABSL_GUARDED_BY(mu);
  // Every thread's stack for every slot, by base: a fault report's "whose
  // memory is this" without a walk over all slots' threads.
  struct StackEntry {
    size_t slot;
    size_t size;
  };
  std::map<uintptr_t, StackEntry> stacks ABSL_GUARDED_BY(mu);
  Registry() { std::fill(std::begin(key_slot), std::end(key_slot), -1); }
};

Registry& GetRegistry() {
  static Registry* registry = new Registry;
  return *registry;
}

SelectorPage* SelectorOfBlock(ThreadBlock* tb) {
  return reinterpret_cast<SelectorPage*>(reinterpret_cast<char*>(tb) -
                                         MPKBOX_PAGE_SIZE);
}

template <typename T>
T Racy(const T& word) {  // another thread's word, read once
  return __atomic_load_n(&word, __ATOMIC_RELAXED);
}

void DropContext(ThreadBlock* tb, size_t index) {
  ReleaseHeapThread(tb, index);
  CallContext& ctx = tb->contexts[index];
  GetRegistry().stacks.erase(ctx.stack_base);
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
    if (MPKBOX_SWITCHED_OFF(skip_stack_scrub) ||
        ScrubCompartmentStack(stack)) {
      ctx.stack_base = stack.base;
      ctx.stack_size = stack.size;
    } else {
      GetRegistry().stacks.erase(stack.base);
    }
  }
}

// The context's stack is set; the rest comes from the slot.
void Activate(CallContext& ctx, const Slot& s, const DomainSpec& spec) {
  ctx.top = ctx.stack_base + ctx.stack_size - 16;  // [top]: the gate's CFI copy
  ctx.domain = s.domain;
  ctx.policy = spec.policy;
}

// Whether any thread is in the slot's compartment, entering it (Call has
// named its context: pending_ctx) or suspended in it under a callback or a
// host signal handler (its frames). Another thread's words may change
// under us; the caller orders this read after its generation bump with a
// process-wide barrier.
bool InUse(Slot& s, size_t index) {
  for (ThreadBlock* tb : s.threads) {
    CallContext* ctx = &tb->contexts[index];
    if (Racy(tb->pending_ctx) == ctx ||
        Racy(SelectorOfBlock(tb)->current_domain) == s.domain) {
      return true;
    }
    const uint64_t depth = std::min<uint64_t>(
        Racy(tb->depth) & (kHandlerDepthBias - 1), MPKBOX_MAX_DEPTH);
    for (uint64_t i = 0; i < depth; ++i) {
      const Frame& f = tb->frames[i];
      if (Racy(f.ctx) == reinterpret_cast<uint64_t>(ctx) ||
          Racy(f.prev_domain) == s.domain) {
        return true;
      }
    }
  }
  return false;
}

// A full barrier on every running thread of the process: a Call that
// named its context before it read the old generation is seen by the
// InUse that follows (Dekker's pattern; the fast path pays no fence).
// Without it (a kernel before 4.14) nothing is evicted: no key changes hands.
bool ProcessWideBarrier() {
  if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) {
    return true;
  }
  // Not registered yet, or a fork's child (its mm starts unregistered).
  return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0,
                 0) == 0 &&
         syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

[[noreturn]] void RetagFailed(const Slot& s, const absl::Status& why) {
  // Pages left on a key the cache hands to another compartment would be
  // that compartment's to read.
  fprintf(stderr, "mpkbox: cannot move compartment '%s' to another key: %s\n",
          s.name.c_str(), std::string(why.message()).c_str());
  abort();
}

// Every page of the slot's compartment (heap, images, stacks) to `key`.
void Retag(Registry& r, Slot& s, size_t index, int key)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
  if (CompartmentHeap* heap = HeapOfSlot(index); heap != nullptr) {
    if (absl::Status st = heap->Retag(key); !st.ok()) RetagFailed(s, st);
    r.stats.retags += heap->RetagRanges();
  }
  for (ThreadBlock* tb : s.threads) {
    const CallContext& ctx = tb->contexts[index];
    if (ctx.stack_base == 0) continue;
    // The guard too: an overflow must report this compartment's key.
    absl::Status st = TagPages(reinterpret_cast<void*>(ctx.stack_base),
                               kGuardBytes, PROT_NONE, key);
    if (st.ok()) {
      st = TagPages(reinterpret_cast<void*>(ctx.stack_base + kGuardBytes),
                    ctx.stack_size - kGuardBytes, PROT_READ | PROT_WRITE, key);
    }
    if (!st.ok()) RetagFailed(s, st);
    r.stats.retags += 2;
  }
}

// Takes the victim's key if no thread is in it or entering it; its memory
// goes to the trusted key, which every compartment's PKRU closes.
bool TryEvict(Registry& r, size_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
  Slot& v = r.slots[index];
  const bool in_use_check = !MPKBOX_SWITCHED_OFF(evict_running);
  if (v.pins > 0 || (in_use_check && InUse(v, index))) return false;
  // Every thread's context for it goes stale: a Call that reads the new
  // generation takes the slow path, which needs a key.
  v.generation = r.next_generation++;
  uint64_t current = v.call_generation->load(std::memory_order_relaxed);
  while (current != 0 &&
         !v.call_generation->compare_exchange_weak(current, v.generation)) {
  }
  // A Call that read the old generation had named its context before:
  // after the barrier, InUse sees it (and it keeps its key).
  if (!ProcessWideBarrier() || (in_use_check && InUse(v, index))) {
    return false;
  }
  if (!MPKBOX_SWITCHED_OFF(skip_eviction_retag)) {
    Retag(r, v, index, Keys().trusted);
  }
  r.key_slot[v.key] = -1;
  v.key = -1;
  v.pkru = 0;
  ++r.stats.evictions;
  return true;
}

// A key for the slot: a free one, else an idle compartment's, by CLOCK with
// a second chance: in order of their last slow-path entry, those not called
// since the hand last passed first (the fast path writes only a flag, and
// only when it is clear). -1 when every key is held by a compartment in use.
int FindKey(Registry& r, size_t index, bool evict)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
  if (!r.keys_exhausted) {
    absl::StatusOr<int> fresh = AllocateKey("the key cache");
    if (fresh.ok()) return *fresh;
    r.keys_exhausted = true;
  }
  if (!evict) return -1;
  std::vector<std::pair<uint64_t, int>> holders;  // (last use, key)
  for (int k = 0; k < kNumKeys; ++k) {
    if (r.key_slot[k] >= 0 && static_cast<size_t>(r.key_slot[k]) != index) {
      holders.push_back({r.slots[r.key_slot[k]].last_use, k});
    }
  }
  std::sort(holders.begin(), holders.end());
  for (bool second_chance : {true, false}) {
    for (const auto& [last_use, k] : holders) {
      if (second_chance &&
          r.slots[r.key_slot[k]].referenced->exchange(false)) {
        continue;
      }
      if (TryEvict(r, r.key_slot[k])) return k;
    }
  }
  return -1;
}

// False when no key can be had now.
bool MakeResident(Registry& r, size_t index, bool evict = true)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
  Slot& s = r.slots[index];
  s.last_use = ++r.clock;
  if (s.key >= 0) return true;
  const int key = FindKey(r, index, evict);
  if (key < 0) return false;
  Retag(r, s, index, key);
  s.key = key;
  s.pkru = CompartmentPkru(key, Keys().selector, s.ambient);
  r.key_slot[key] = static_cast<int>(index);
  ++r.stats.misses;
  return true;
}

// tb's context for the slot, with a stack, at the slot's generation.
// The caller holds the registry lock.
absl::Status PrepareContext(Slot& s, ThreadBlock* tb, const DomainSpec& spec) {
  CallContext& ctx = tb->contexts[spec.slot];
  const bool listed =
      std::find(s.threads.begin(), s.threads.end(), tb) != s.threads.end();
  // A stack kept (zeroed) by a Reset of this slot is this thread's again.
  if (!listed || ctx.stack_base == 0 ||
      ctx.stack_size != CompartmentStackSize(spec.stack_bytes)) {
    absl::StatusOr<StackMapping> stack =
        MapCompartmentStack(spec.stack_bytes, s.key, spec.name);
    if (!stack.ok()) return stack.status();
    Registry& r = GetRegistry();
    r.stacks.erase(ctx.stack_base);
    UnmapCompartmentStack({ctx.stack_base, ctx.stack_size});  // a stale one
    ctx.stack_base = stack->base;
    ctx.stack_size = stack->size;
    r.stacks[stack->base] = {spec.slot, stack->size};
    ctx.generation = 0;
    if (!listed) s.threads.push_back(tb);
  }
  // After an eviction only the key changed: top stays, for a thread
  // suspended in this compartment under a callback keeps its frames there.
  if (ctx.generation == 0) Activate(ctx, s, spec);
  ctx.pkru = s.pkru;
  ctx.generation = s.generation;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SlotGrant> AcquireSlot(absl::string_view name, Ambient ambient,
                                      std::atomic<uint64_t>* generation,
                                      std::atomic<bool>* referenced) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  // Slots whose heap-cache entry would alias region headers come last.
  for (size_t n = 0; n < 2 * kMaxCompartments; ++n) {
    const size_t i = n % kMaxCompartments;
    const bool last = HeapCacheEntryNearRegionStarts(i);
    if (last != (n >= kMaxCompartments)) continue;
    Slot& s = r.slots[i];
    if (s.used) continue;
    s.used = true;
    s.ambient = ambient;
    s.generation = r.next_generation++;
    s.domain = (r.next_domain++ << kDomainSlotBits) | i;
    s.call_generation = generation;
    s.referenced = referenced;
    s.name = std::string(name);
    generation->store(s.generation, std::memory_order_relaxed);
    return SlotGrant{i, s.generation, s.domain};
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
  if (s.key >= 0) {
    r.key_slot[s.key] = -1;
    FreeKey(s.key);
    r.keys_exhausted = false;
  }
  s = Slot{};
}

void TakeFreeKey(size_t slot) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  MakeResident(r, slot, /*evict=*/false);
}

void PinSlot(size_t slot) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  ++r.slots[slot].pins;
}

void UnpinSlot(size_t slot) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  --r.slots[slot].pins;
}

absl::Status EnterSlot(ThreadBlock* tb, const DomainSpec& spec) {
  Registry& r = GetRegistry();
  absl::Time deadline = absl::InfiniteFuture();
  absl::Duration nap = absl::Microseconds(20);
  for (;;) {
    {
      absl::MutexLock lock(&r.mu);
      Slot& s = r.slots[spec.slot];
      if (!s.used || s.domain != spec.domain) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "compartment '%s' was destroyed during the call", spec.name));
      }
      if (MakeResident(r, spec.slot)) return PrepareContext(s, tb, spec);
      ++r.stats.waits;
    }
    // Every key is held by a compartment a thread is in: wait for one.
    const absl::Time now = absl::Now();
    if (deadline == absl::InfiniteFuture()) deadline = now + kKeyWait;
    if (now > deadline) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "compartment '%s': no protection key came free in %s; every "
          "hardware key is held by a compartment that a thread is running "
          "(inside a call or a callback)",
          spec.name, absl::FormatDuration(kKeyWait)));
    }
    absl::SleepFor(nap);
    nap = std::min(nap * 2, absl::Milliseconds(1));
  }
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

int SlotKey(size_t slot) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  return r.slots[slot].key;
}

uint32_t SlotPkru(size_t slot) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  return r.slots[slot].pkru;
}

KeyCacheStats GetKeyCacheStats() {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  return r.stats;
}

std::string KeyOwner(int key) {
  if (key < 0 || key >= kNumKeys) return "";
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  return r.key_slot[key] >= 0 ? r.slots[r.key_slot[key]].name : "";
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

namespace {

// The slot whose window or stacks hold p, or -1.
int SlotOfAddress(Registry& r, uintptr_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
  if (InZone(p)) {
    // A used slot's heap outlives this lock (destruction releases the slot
    // first); the rest of the zone is the PROT_NONE reservation, key 0.
    const size_t window = WindowOf(p);
    if (window >= kMaxCompartments || !r.slots[window].used) return -1;
    const CompartmentHeap* heap = HeapOfSlot(window);
    return heap != nullptr && heap->Contains(p, 1) ? static_cast<int>(window)
                                                   : -1;
  }
  auto it = r.stacks.upper_bound(p);
  if (it == r.stacks.begin()) return -1;
  --it;
  return p - it->first < it->second.size ? static_cast<int>(it->second.slot)
                                         : -1;
}

}  // namespace

std::string CompartmentOfAddress(uintptr_t p) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  const int slot = SlotOfAddress(r, p);
  return slot >= 0 ? r.slots[slot].name : "";
}

int KeyOfAddress(uintptr_t p) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  const int slot = SlotOfAddress(r, p);
  if (slot < 0) return InZone(p) ? 0 : -1;
  // An evicted compartment's pages wait on the trusted key.
  const int key = r.slots[slot].key;
  return key >= 0 ? key : Keys().trusted;
}

}  // namespace mpkbox::internal
