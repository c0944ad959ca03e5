// Compartment: a pkey-isolated domain in this process. Code called through
// Call runs with the compartment's PKRU on its own stack; what it can touch is
// its own memory and (read-only by default) the ambient key-0 memory.
//
//   auto box = mpkbox::Compartment::Create({.name = "parser"});
//   if (!box.ok()) return box.status();
//   absl::StatusOr<mpkbox::Tainted<int>> r = (*box)->Call(&parse, data, len);
//
// Status codes a caller can branch on are listed in docs/API.md.
#ifndef MPKBOX_COMPARTMENT_H_
#define MPKBOX_COMPARTMENT_H_

#include <cstddef>
#include <cstdint>
#include <atomic>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mpkbox/callback.h"
#include "mpkbox/compartment_options.h"
#include "mpkbox/fault_report.h"
#include "mpkbox/internal/call.h"
#include "mpkbox/internal/fast_path.h"
#include "mpkbox/syscall_policy.h"
#include "mpkbox/tainted.h"

namespace mpkbox {
namespace internal {
class CompartmentHeap;
class ElfLoader;
struct LibcState;
}  // namespace internal

class Compartment {
 public:
  // Up to 4,096 live compartments (the slot registry's kMaxCompartments);
  // each holds a hardware protection key only while the key cache gives it
  // one (docs/API.md). kFailedPrecondition without PKU, kResourceExhausted
  // beyond that.
  static absl::StatusOr<std::unique_ptr<Compartment>> Create(
      CompartmentOptions options);

  // Returns every page and the key. No thread may be inside.
  ~Compartment();

  Compartment(const Compartment&) = delete;
  Compartment& operator=(const Compartment&) = delete;

  // Runs fn(args...) in the compartment on this thread. fn takes up to 6
  // integer/enum/pointer and up to 8 float/double parameters and returns
  // void or one such value. Returns absl::Status for void, else
  // absl::StatusOr<Tainted<R>>.
  // Always inlined: its fast path is a few loads and the gate.
  template <typename R, typename... P, typename... A>
  ABSL_ATTRIBUTE_ALWAYS_INLINE auto Call(R (*fn)(P...), A&&... args);

  // Makes host_fn callable from this compartment (see callback.h).
  template <typename Fn>
  absl::StatusOr<Callback<Fn>> RegisterCallback(Fn* host_fn);

  // Loads a shared object, and the libraries it needs, into this
  // compartment: its own copy, every page on the compartment's key, its
  // constructors run inside (docs/API.md, "Loading code"). No thread may be
  // inside. kPermissionDenied for code with WRPKRU/XRSTOR bytes;
  // kUnimplemented for features the loader refuses (initial-exec TLS, TLS
  // descriptors, copy relocations, ...);
  // kNotFound for a missing file or symbol; a constructor's fault as it is.
  absl::Status Load(absl::string_view path);
  // A function or object of a loaded object: callable with Call.
  template <typename Fn>
  absl::StatusOr<Fn*> Lookup(absl::string_view symbol) {
    absl::StatusOr<void*> p = LookupSymbol(symbol);
    if (!p.ok()) return p.status();
    return reinterpret_cast<Fn*>(*p);
  }
  // Lets code loaded afterwards import `symbol`: it calls host_fn through
  // the callback gate, with host rights (arguments arrive as Tainted<T>
  // where host_fn declares them so).
  template <typename Fn>
  absl::Status Expose(absl::string_view symbol, Fn* host_fn) {
    absl::StatusOr<Callback<Fn>> cb = RegisterCallback(host_fn);
    if (!cb.ok()) return cb.status();
    ExposeStub(symbol, reinterpret_cast<uintptr_t>(cb->get()));
    exposed_.push_back(std::make_shared<Callback<Fn>>(*std::move(cb)));
    return absl::OkStatus();
  }

  // Memory in the compartment's heap, for the host to fill or read. Counts
  // against heap_limit_bytes (kResourceExhausted beyond it).
  absl::StatusOr<void*> Allocate(size_t bytes,
                                 size_t alignment = alignof(std::max_align_t));
  // Frees a live allocation of this compartment's heap, whoever made it.
  // Anything else is ignored (the pointer may have come from the
  // compartment); TryFree says so.
  void Free(void* p);
  absl::Status TryFree(void* p);
  // True only if every byte of [p, p + bytes) is memory that carries this
  // compartment's key now: its heap's mapped extents or its stacks. After
  // Reset or destruction, nothing of the old heap is.
  bool Contains(const void* p, size_t bytes) const;

  // Fresh stacks (and, with the heap, a fresh heap); usable again after a
  // fault or timeout. No thread may be inside.
  absl::Status Reset();
  // What ended the last failed call (fault, timeout, exception); null if
  // none since Create or Reset.
  const FaultReport* last_fault() const;
  CompartmentStats stats() const;
  const std::string& name() const { return options_.name; }

  // The hardware key tagging this compartment's memory now, and its PKRU
  // value; -1 and 0 while the key cache has given its key to another
  // compartment (its memory then waits on a key no compartment opens).
  int pkey() const;
  uint32_t pkru() const;

 private:
  explicit Compartment(CompartmentOptions options);

  // Slow path of Call: sets up this thread and its stack for this
  // compartment, refuses a faulted compartment, arms call_timeout.
  absl::StatusOr<internal::ThreadBlock*> BeginCall();
  // After the gate returned on the slow path or with a fault.
  absl::Status EndCall(internal::ThreadBlock* tb, bool timed);
  // `target`: the host function when host_fn is a wrapper that checks its
  // result (callback.h).
  absl::StatusOr<int> AddCallback(void* host_fn, int returns,
                                  void* target = nullptr);
  // kInvalidArgument for Call's argument `index` (0-based), which points
  // into the host's private memory.
  absl::Status HostPointerArgument(int index, uintptr_t address) const;
  // A free the compartment made is checked before the call may succeed.
  void CheckFrees(internal::ThreadBlock* tb) {
    if (ABSL_PREDICT_FALSE(internal::FreesPending(tb, slot_)) &&
        internal::CallFault(tb) == 0) {
      internal::CheckFreesAfterCall(tb, slot_);
    }
  }
  absl::StatusOr<void*> LookupSymbol(absl::string_view symbol);
  void ExposeStub(absl::string_view symbol, uintptr_t stub);
  internal::ElfLoader& loader();

  CompartmentOptions options_;
  const bool timed_;  // call_timeout is finite
  // Three ids, each for its own reader (the hardware key is the key
  // cache's, slot_registry.h):
  // - slot_: its index in per-thread tables (contexts, heap caches), reused
  //   once it is destroyed;
  // - domain_: unique for the process's lifetime, with the slot in its low
  //   bits, so code that sees only the running domain finds the slot;
  // - generation_: which incarnation (Reset) a thread's context belongs to.
  uint64_t domain_ = 0;
  size_t slot_ = 0;
  bool released_ = false;  // Create failed: nothing to destroy
  // Changes on Reset and when the key cache takes its key, so stale
  // contexts mismatch; 0 while faulted, so every thread's Call takes the
  // slow path and is refused.
  std::atomic<uint64_t> generation_{0};
  // Set by every Call, cleared by the key cache as its clock hand passes
  // (slot_registry.cc): a compartment called since keeps its key one more
  // round. Next to generation_: the fast path reads that line anyway.
  std::atomic<bool> referenced_{false};
  std::unique_ptr<FaultReport> last_fault_;
  std::unique_ptr<internal::CompartmentHeap> heap_;
  std::unique_ptr<internal::ElfLoader> loader_;
  // Loaded code's C library on the host side: its descriptors, its output.
  std::unique_ptr<internal::LibcState> libc_;
  std::vector<std::shared_ptr<void>> exposed_;  // Callbacks kept alive
};

template <typename R, typename... P, typename... A>
inline auto Compartment::Call(R (*fn)(P...), A&&... args) {
  using Sig = internal::Signature<R, P...>;
  static_assert(Sig::kArgTypesSupported,
                "mpkbox::Compartment::Call: every parameter must be an "
                "integer, enum, pointer, float or double (no structs, "
                "references or long double)");
  static_assert(Sig::kArgCountSupported,
                "mpkbox::Compartment::Call: at most 6 integer/pointer and 8 "
                "float/double parameters (nothing is passed on the stack)");
  static_assert(Sig::kReturnSupported,
                "mpkbox::Compartment::Call: the return type must be void, an "
                "integer, enum, pointer, float or double");
  static_assert(sizeof...(A) == sizeof...(P),
                "mpkbox::Compartment::Call: wrong number of arguments");
  using Result = std::conditional_t<std::is_void_v<R>, absl::Status,
                                    absl::StatusOr<Tainted<R>>>;

  if constexpr (internal::kAnyPointer<P...>) {
    // Compartments cannot read the host's stacks, data or heap: say so
    // before the call rather than fault inside.
    const uintptr_t pointers[] = {internal::PointerBits<P>(args)...};
    if (const int bad = internal::FirstHostPointer(pointers, sizeof...(P));
        ABSL_PREDICT_FALSE(bad >= 0)) {
      return Result(HostPointerArgument(bad, pointers[bad]));
    }
  }
  internal::ThreadBlock* tb = internal::CurrentThreadBlock();
  bool timed = false;
  if (ABSL_PREDICT_FALSE(
          internal::NeedsSlowPath(tb, slot_, reinterpret_cast<uintptr_t>(fn),
                                  generation_) ||
          timed_)) {
    absl::StatusOr<internal::ThreadBlock*> ready = BeginCall();
    if (!ready.ok()) {
      if (tb != nullptr) internal::EndPendingCall(tb);
      return Result(ready.status());
    }
    tb = *ready;
    timed = timed_;
    internal::SetPendingCall(tb, slot_, reinterpret_cast<uintptr_t>(fn));
  }
  if (ABSL_PREDICT_FALSE(!referenced_.load(std::memory_order_relaxed))) {
    referenced_.store(true, std::memory_order_relaxed);
  }
  if constexpr (std::is_void_v<R>) {
    internal::InvokeGate<R, P...>(std::forward<A>(args)...);
    internal::EndPendingCall(tb);
    CheckFrees(tb);
    if (ABSL_PREDICT_FALSE(internal::CallFault(tb) != 0 || timed)) {
      return EndCall(tb, timed);
    }
    return absl::OkStatus();
  } else {
    R raw = internal::InvokeGate<R, P...>(std::forward<A>(args)...);
    internal::EndPendingCall(tb);
    CheckFrees(tb);
    if (ABSL_PREDICT_FALSE(internal::CallFault(tb) != 0 || timed)) {
      if (absl::Status s = EndCall(tb, timed); !s.ok()) return Result(s);
    }
    return Result(internal::TaintedAccess::Make(raw));
  }
}

template <typename Fn>
absl::StatusOr<Callback<Fn>> Compartment::RegisterCallback(Fn* host_fn) {
  static_assert(std::is_function_v<Fn>,
                "mpkbox::Compartment::RegisterCallback takes a function");
  using Sig = typename internal::CallbackTraits<Fn>::Sig;
  static_assert(Sig::kArgTypesSupported && Sig::kArgCountSupported &&
                    Sig::kReturnSupported,
                "mpkbox::Compartment::RegisterCallback: the same signatures "
                "as Call (Tainted<T> parameters count as T)");
  using Traits = internal::CallbackTraits<Fn>;
  absl::StatusOr<int> slot;
  if constexpr (std::is_pointer_v<typename Traits::Result>) {
    // A pointer result is checked before the compartment gets it.
    void* wrapper = reinterpret_cast<void*>(
        &internal::CheckedPointerResult<typename Traits::Raw>::Run);
    slot = AddCallback(host_fn == nullptr ? nullptr : wrapper,
                       Traits::kReturns, reinterpret_cast<void*>(host_fn));
  } else {
    slot = AddCallback(reinterpret_cast<void*>(host_fn), Traits::kReturns);
  }
  if (!slot.ok()) return slot.status();
  return Callback<Fn>(*slot);
}

}  // namespace mpkbox

#endif  // MPKBOX_COMPARTMENT_H_
