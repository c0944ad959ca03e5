// Callback 0: where compartment code's malloc, free and friends enter the
// runtime, with host rights on the host stack, when the HeapCache cannot
// serve them; and the check of the frees a call buffered, when it returns.
// Every argument is untrusted.
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <string.h>

#include <mutex>

#include "allocator/compartment_heap.h"
#include "allocator/heap_cache.h"
#include "allocator/magazines.h"
#include "trampolines/thread_block.h"
#include "trampolines/trampolines.h"

namespace mpkbox::internal {

inline constexpr char kBadFree[] =
    "free of a pointer that is not a live allocation of the compartment";


CompartmentHeap::EntryResult CompartmentHeap::RunAllocatorOp(
    ThreadBlock* tb, size_t slot, uint64_t op, uint64_t a, uint64_t b) {
  std::lock_guard<std::mutex> lock(mu_);
  EntryResult r;
  HeapThread* t = ThreadFor(tb, slot);
  if (t != nullptr) {
    Reconcile(t);
    r.hostile = FlushFrees(t);
    if (r.hostile != 0) {
      r.why = kBadFree;
      return r;
    }
    DecayStashes(t);
  }
  auto fail = [&](int err) {
    ++stats_.failed_allocations;
    errno = err;  // the compartment's errno: key 0, which it cannot write
    if (t != nullptr) t->cache->errno_value = err;  // loaded code's errno
    return r;
  };
  // The limit counts what this thread's magazines hold: when it refuses,
  // they are emptied and the request is tried once more.
  auto drained = [&] { return t != nullptr && DrainMagazines(t); };
  auto allocate = [&](size_t bytes, bool zero) {
    auto once = [&]() -> void* {
      if (t == nullptr || bytes > kMaxCachedSize) {
        return AllocateLive(bytes, kMinAllocation,
                            TcacheFlags(t) | (zero ? MALLOCX_ZERO : 0));
      }
      void* p = Refill(t, ClassOf(bytes));
      if (p != nullptr && zero) memset(p, 0, bytes);
      return p;
    };
    void* p = once();
    if (p == nullptr && drained()) p = once();
    if (p == nullptr) return fail(ENOMEM);
    r.value = reinterpret_cast<uintptr_t>(p);
    return r;
  };
  switch (op) {
    case kOpMalloc:
      return allocate(a, false);
    case kOpCalloc: {
      size_t bytes;
      if (__builtin_mul_overflow(a, b, &bytes)) return fail(ENOMEM);
      return allocate(bytes, true);
    }
    case kOpFree:
      if (a != 0 && !live_.TakeLive(a)) {
        r.hostile = a;
        r.why = kBadFree;
        return r;
      }
      if (a != 0) Release(t, reinterpret_cast<void*>(a));
      return r;
    case kOpRealloc: {
      if (a == 0) return allocate(b, false);
      if (!live_.IsLive(a)) {
        r.hostile = a;
        r.why = "realloc of a pointer that is not a live allocation of the "
                "compartment";
        return r;
      }
      if (b == 0) {
        live_.TakeLive(a);
        Release(t, reinterpret_cast<void*>(a));
        return r;
      }
      void* p = ReallocLive(reinterpret_cast<void*>(a), b, TcacheFlags(t));
      if (p == nullptr && drained()) {
        p = ReallocLive(reinterpret_cast<void*>(a), b, TcacheFlags(t));
      }
      if (p == nullptr) return fail(ENOMEM);
      r.value = reinterpret_cast<uintptr_t>(p);
      return r;
    }
    case kOpAlignedAlloc: {
      if (a == 0 || (a & (a - 1)) != 0) return fail(EINVAL);
      void* p = AllocateLive(b, a, TcacheFlags(t));
      if (p == nullptr && drained()) p = AllocateLive(b, a, TcacheFlags(t));
      if (p == nullptr) return fail(ENOMEM);
      r.value = reinterpret_cast<uintptr_t>(p);
      return r;
    }
    case kOpUsableSize:
      r.value = live_.IsLive(a) ? sallocx(reinterpret_cast<void*>(a), 0) : 0;
      return r;
    case kOpTlsBlock:
      return TlsBlock(t, a);
    default:
      r.hostile = 1;
      r.why = "unknown allocator request";
      return r;
  }
}

CompartmentHeap::EntryResult CompartmentHeap::CheckFrees(ThreadBlock* tb,
                                                         size_t slot) {
  std::lock_guard<std::mutex> lock(mu_);
  EntryResult r;
  HeapThread* t = tb->heap_threads[slot];
  if (t == nullptr) return r;
  Reconcile(t);
  r.hostile = FlushFrees(t);
  if (r.hostile != 0) {
    r.why = kBadFree;
  }
  DecayStashes(t);
  return r;
}

void CheckFreesAfterCall(ThreadBlock* tb, size_t slot) {
  CompartmentHeap* heap = HeapOfSlot(slot);
  if (heap == nullptr) return;
  CompartmentHeap::EntryResult r = heap->CheckFrees(tb, slot);
  if (r.hostile == 0) return;
  RecordFault(tb, FaultKind::kHeapViolation,
              {.address = r.hostile, .what = r.why});
  tb->fault = 1;
}

}  // namespace mpkbox::internal

extern "C" uint64_t mpkbox_allocator_entry(uint64_t op, uint64_t a,
                                           uint64_t b) {
  using namespace mpkbox::internal;
  ThreadBlock* tb = CurrentThreadBlock();
  // The gate checked that the callback's frame sits on a call into the
  // compartment whose domain it saved.
  const uint64_t domain = tb->frames[tb->depth - 1].prev_domain;
  const size_t slot = SlotOfDomain(domain);
  CompartmentHeap* heap = HeapOfSlot(slot);
  if (heap == nullptr || heap->domain() != domain) {
    AbandonCallback(tb, FaultKind::kHeapViolation, 0,
            "allocation in a compartment without a heap");
  }
  CompartmentHeap::EntryResult r = heap->RunAllocatorOp(tb, slot, op, a, b);
  if (r.hostile != 0) {
    AbandonCallback(tb, FaultKind::kHeapViolation, r.hostile, r.why);
  }
  return r.value;
}
