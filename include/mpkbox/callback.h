// Callback<Fn>: a host function that compartment code may call, made by
// Compartment::RegisterCallback. RAII: the registration ends with the object.
//
//   int OnItem(mpkbox::Tainted<int> id, mpkbox::Tainted<const char*> name);
//   auto cb = box->RegisterCallback(&OnItem);     // StatusOr<Callback<...>>
//   box->Call(plugin_walk, cb->get());            // get(): int (*)(int, const char*)
//
// The host function runs with host rights on the host stack. Its parameters
// may be declared Tainted<T> (same registers as T): they come from the
// compartment and deserve the same suspicion as a Call's result.
#ifndef MPKBOX_CALLBACK_H_
#define MPKBOX_CALLBACK_H_

#include <cstdint>
#include <type_traits>
#include <utility>

#include "mpkbox/internal/call.h"
#include "mpkbox/tainted.h"

namespace mpkbox {

class Compartment;

namespace internal {
void ReleaseCallbackSlot(int slot);
uintptr_t CallbackStubAddress(int slot);

template <typename Fn>
struct CallbackTraits;
template <typename R, typename... P>
struct CallbackTraits<R(P...)> {
  using Result = R;
  using Raw = R(typename Untaint<P>::type...);
  using Sig = Signature<R, typename Untaint<P>::type...>;
  // Which register carries the result back (the gate clears the others).
  static constexpr int kReturns =
      std::is_void_v<R>               ? kReturnsNothing
      : std::is_floating_point_v<R>   ? kReturnsFloat
                                      : kReturnsInteger;
};
template <typename R, typename... P>
struct CallbackTraits<R(P...) noexcept> : CallbackTraits<R(P...)> {};

// The host function of the callback running on this thread (its
// CallbackEntry::target), for a wrapper registered in its place.
uintptr_t RunningCallbackTarget();
// Ends the compartment call under the running callback with
// kInvalidArgument if `result` points into the host's private memory.
void CheckCallbackResult(uintptr_t result);

// Registered instead of a host function that returns a pointer.
template <typename Fn>
struct CheckedPointerResult;
template <typename R, typename... P>
struct CheckedPointerResult<R(P...)> {
  static R Run(P... args) {
    R result = reinterpret_cast<R (*)(P...)>(RunningCallbackTarget())(args...);
    CheckCallbackResult(reinterpret_cast<uintptr_t>(result));
    return result;
  }
};
}  // namespace internal

template <typename Fn>
class Callback {
 public:
  // The signature compartment code calls: Fn with Tainted<T> parameters as T.
  using RawFn = typename internal::CallbackTraits<Fn>::Raw;

  Callback(Callback&& other) noexcept
      : slot_(std::exchange(other.slot_, -1)) {}
  Callback& operator=(Callback&& other) noexcept {
    if (this != &other) {
      Reset();
      slot_ = std::exchange(other.slot_, -1);
    }
    return *this;
  }
  Callback(const Callback&) = delete;
  Callback& operator=(const Callback&) = delete;
  ~Callback() { Reset(); }

  // Callable from inside the compartment that registered it; null once moved.
  RawFn* get() const {
    return slot_ < 0 ? nullptr
                     : reinterpret_cast<RawFn*>(
                           internal::CallbackStubAddress(slot_));
  }

 private:
  friend class Compartment;
  explicit Callback(int slot) : slot_(slot) {}
  void Reset() {
    if (slot_ >= 0) internal::ReleaseCallbackSlot(std::exchange(slot_, -1));
  }

  int slot_;
};

}  // namespace mpkbox

#endif  // MPKBOX_CALLBACK_H_
