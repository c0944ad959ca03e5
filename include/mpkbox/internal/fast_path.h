// What Compartment::Call's inline fast path reads, and nothing more. Internal:
// not part of the API contract. The library's full layouts
// (trampolines/thread_block.h, allocator/heap_cache.h) assert that these
// offsets are theirs.
#ifndef MPKBOX_INTERNAL_FAST_PATH_H_
#define MPKBOX_INTERNAL_FAST_PATH_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace mpkbox::internal {

struct SelectorPage;  // per thread, on the selector key
struct ThreadBlock;   // per thread, on the trusted key, one page after it
struct CallContext;   // what a thread needs to enter one compartment

inline constexpr size_t kFastPageSize = 4096;
// Offsets in ThreadBlock.
inline constexpr size_t kFastDepth = 0;
inline constexpr size_t kFastPendingCtx = 8;
inline constexpr size_t kFastPendingFn = 16;
inline constexpr size_t kFastFault = 24;
inline constexpr size_t kFastGuardEpoch = 96;
inline constexpr size_t kFastContexts = 8320;
// CallContext's size, and its generation's offset.
inline constexpr size_t kFastContextBytes = 64;
inline constexpr size_t kFastContextGeneration = 24;
// Deepest frame stack at which Call may enter.
inline constexpr uint64_t kMaxCallDepth = 61;
// The per-thread table of HeapCache pointers ends where the SelectorPage
// starts; a HeapCache's counts of frees waiting for the runtime's check
// (the buffer's and the magazines' hot regions, one 64-bit word).
inline constexpr size_t kFastHeapCacheTableBytes = 32768;
inline constexpr size_t kFastFreesCount = 64624;

}  // namespace mpkbox::internal

// This thread's selector page, or null before its first entry. TLS is on
// key 0: compartments can read it but, under Ambient::kReadOnly, not change
// it. Local-exec is faster; shared objects need initial-exec.
#ifdef MPKBOX_TLS_LOCAL_EXEC
#define MPKBOX_TLS_MODEL "local-exec"
#else
#define MPKBOX_TLS_MODEL "initial-exec"
#endif
extern "C" __thread __attribute__((tls_model(MPKBOX_TLS_MODEL)))
mpkbox::internal::SelectorPage* mpkbox_tls_thread;

// Changes when the set of guarded instructions does (a dlopen); a thread
// whose ThreadBlock guard epoch differs refreshes its breakpoints first.
extern "C" uint64_t mpkbox_guard_epoch;

// Everything here is inlined into Call: the fast path is these loads.
#define MPKBOX_FAST_INLINE inline __attribute__((always_inline))

namespace mpkbox::internal {

// The word at `offset` of a per-thread block.
template <typename T = uint64_t>
MPKBOX_FAST_INLINE T& FastWord(void* block, size_t offset) {
  return *reinterpret_cast<T*>(static_cast<char*>(block) + offset);
}

MPKBOX_FAST_INLINE ThreadBlock* CurrentThreadBlock() {
  SelectorPage* sel = mpkbox_tls_thread;
  return sel == nullptr ? nullptr
                        : reinterpret_cast<ThreadBlock*>(
                              reinterpret_cast<char*>(sel) + kFastPageSize);
}

MPKBOX_FAST_INLINE CallContext* ContextOf(ThreadBlock* tb, size_t slot) {
  return reinterpret_cast<CallContext*>(reinterpret_cast<char*>(tb) +
                                        kFastContexts +
                                        slot * kFastContextBytes);
}

// Names the gate's target: the context to enter and the function to call.
MPKBOX_FAST_INLINE void SetPendingCall(ThreadBlock* tb, size_t slot, uintptr_t fn) {
  FastWord<CallContext*>(tb, kFastPendingCtx) = ContextOf(tb, slot);
  FastWord<uintptr_t>(tb, kFastPendingFn) = fn;
}

// The fast path enters only a thread that is set up for `slot` at the
// compartment's current generation, not too deep, with current guards.
// It names its target first: the key cache bumps a compartment's generation
// before it looks for threads entering it (with a process-wide barrier in
// between, slot_registry.cc), so a thread that still read the old
// generation is one the cache sees, and whose key it leaves alone.
MPKBOX_FAST_INLINE bool NeedsSlowPath(ThreadBlock* tb, size_t slot,
                                      uintptr_t fn,
                                      const std::atomic<uint64_t>& generation) {
  if (tb == nullptr) return true;
  SetPendingCall(tb, slot, fn);
  // Program order is all the cache needs (its barrier does the rest).
  asm volatile("" ::: "memory");
  return FastWord(ContextOf(tb, slot), kFastContextGeneration) !=
             generation.load(std::memory_order_relaxed) ||
         FastWord(tb, kFastDepth) > kMaxCallDepth ||
         FastWord(tb, kFastGuardEpoch) != mpkbox_guard_epoch;
}

// After the gate returned: the thread no longer holds the compartment's key
// in place (its frames do, while a callback runs).
MPKBOX_FAST_INLINE void EndPendingCall(ThreadBlock* tb) {
  FastWord<CallContext*>(tb, kFastPendingCtx) = nullptr;
}

// Nonzero when the call that just returned did not finish.
MPKBOX_FAST_INLINE uint64_t CallFault(ThreadBlock* tb) { return FastWord(tb, kFastFault); }

// True when compartment code of `slot` left frees for the runtime to check
// (Call then checks them before it reports success).
MPKBOX_FAST_INLINE bool FreesPending(ThreadBlock* tb, size_t slot) {
  char* sel = reinterpret_cast<char*>(tb) - kFastPageSize;
  void* cache = FastWord<void*>(sel - kFastHeapCacheTableBytes,
                                slot * sizeof(void*));
  return cache != nullptr && FastWord<uint64_t>(cache, kFastFreesCount) != 0;
}
// Validates and releases them; a hostile one ends the call as a fault.
// Defined in allocator/.
void CheckFreesAfterCall(ThreadBlock* tb, size_t slot);

// The index of the first of `n` addresses that lies in the host's private
// memory (its stacks, writable data or heap), or -1. Defined in runtime/.
int FirstHostPointer(const uintptr_t* addresses, size_t n);

}  // namespace mpkbox::internal

#endif  // MPKBOX_INTERNAL_FAST_PATH_H_
