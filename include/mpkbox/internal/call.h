// Marshalling for Compartment::Call and callbacks: which signatures cross the
// gate, and how arguments reach registers. Internal.
#ifndef MPKBOX_INTERNAL_CALL_H_
#define MPKBOX_INTERNAL_CALL_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "mpkbox/tainted.h"

extern "C" void mpkbox_gate_enter();

namespace mpkbox::internal {

// Which register carries a callback's result back (the gate clears the
// others): MPKBOX_RETURNS_* of trampolines/gate_layout.h.
inline constexpr int kReturnsNothing = 0;
inline constexpr int kReturnsInteger = 1;  // rax
inline constexpr int kReturnsFloat = 2;    // xmm0

// Integer-class: passed in rdi..r9 and returned in rax.
template <typename T>
constexpr bool IsIntegerClass() {
  if constexpr (std::is_integral_v<T>) return sizeof(T) <= 8;
  return std::is_enum_v<T> || std::is_pointer_v<T> ||
         std::is_null_pointer_v<T>;
}
template <typename T>
inline constexpr bool kIsIntegerClass = IsIntegerClass<T>();

// SSE-class: passed in xmm0..7 and returned in xmm0.
template <typename T>
inline constexpr bool kIsFloatClass =
    std::is_same_v<T, float> || std::is_same_v<T, double>;

template <typename R, typename... P>
struct Signature {
  static constexpr size_t kIntArgs = (0 + ... + (kIsIntegerClass<P> ? 1 : 0));
  static constexpr size_t kFloatArgs = (0 + ... + (kIsFloatClass<P> ? 1 : 0));
  static constexpr bool kArgTypesSupported =
      ((kIsIntegerClass<P> || kIsFloatClass<P>) && ...);
  static constexpr bool kArgCountSupported = kIntArgs <= 6 && kFloatArgs <= 8;
  static constexpr bool kReturnSupported =
      std::is_void_v<R> || kIsIntegerClass<R> || kIsFloatClass<R>;
};

// The gate is declared with one uniform signature per return class; unused
// argument registers get zeros, so no host value lingers in them.
using IntGate = uint64_t (*)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                             uint64_t, double, double, double, double, double,
                             double, double, double);
using DoubleGate = double (*)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                              uint64_t, double, double, double, double, double,
                              double, double, double);
using FloatGate = float (*)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                            uint64_t, double, double, double, double, double,
                            double, double, double);

struct Registers {
  uint64_t ints[6] = {};
  double floats[8] = {};
  size_t next_int = 0;
  size_t next_float = 0;

  template <typename P>
  void Put(P value) {
    if constexpr (std::is_same_v<P, float>) {
      // The callee reads the low 32 bits of the xmm register.
      floats[next_float++] = std::bit_cast<double>(
          static_cast<uint64_t>(std::bit_cast<uint32_t>(value)));
    } else if constexpr (std::is_same_v<P, double>) {
      floats[next_float++] = value;
    } else if constexpr (std::is_pointer_v<P>) {
      ints[next_int++] = reinterpret_cast<uintptr_t>(value);
    } else if constexpr (std::is_null_pointer_v<P>) {
      ints[next_int++] = 0;
    } else if constexpr (std::is_enum_v<P>) {
      ints[next_int++] =
          static_cast<uint64_t>(static_cast<std::underlying_type_t<P>>(value));
    } else {
      ints[next_int++] = static_cast<uint64_t>(value);
    }
  }
};

template <typename R>
R FromIntRegister(uint64_t raw) {
  if constexpr (std::is_same_v<R, bool>) {
    return static_cast<uint8_t>(raw) != 0;  // only al is defined
  } else if constexpr (std::is_pointer_v<R>) {
    return reinterpret_cast<R>(static_cast<uintptr_t>(raw));
  } else if constexpr (std::is_null_pointer_v<R>) {
    return nullptr;
  } else if constexpr (std::is_enum_v<R>) {
    return static_cast<R>(static_cast<std::underlying_type_t<R>>(raw));
  } else {
    return static_cast<R>(raw);
  }
}

// Converts as an ordinary call would (implicitly), not as a cast would.
template <typename P>
inline P Implicit(std::type_identity_t<P> value) {
  return value;
}

// Whether a signature has pointer parameters: only then does Call check
// where its arguments point (a compile-time choice: others pay nothing).
template <typename... P>
inline constexpr bool kAnyPointer = (std::is_pointer_v<P> || ...);

// The address a pointer parameter receives; 0 for the others.
template <typename P, typename A>
inline uintptr_t PointerBits(const A& arg) {
  if constexpr (std::is_pointer_v<P>) {
    return reinterpret_cast<uintptr_t>(Implicit<P>(arg));
  } else {
    return 0;
  }
}

// Calls the gate with the arguments in the registers the target expects.
// ThreadBlock::pending_* must already name the target.
template <typename R, typename... P, typename... A>
inline R InvokeGate(A&&... args) {
  Registers r;
  (r.Put<P>(Implicit<P>(std::forward<A>(args))), ...);
  const auto& i = r.ints;
  const auto& f = r.floats;
  if constexpr (std::is_same_v<R, double>) {
    return reinterpret_cast<DoubleGate>(&mpkbox_gate_enter)(
        i[0], i[1], i[2], i[3], i[4], i[5], f[0], f[1], f[2], f[3], f[4],
        f[5], f[6], f[7]);
  } else if constexpr (std::is_same_v<R, float>) {
    return reinterpret_cast<FloatGate>(&mpkbox_gate_enter)(
        i[0], i[1], i[2], i[3], i[4], i[5], f[0], f[1], f[2], f[3], f[4],
        f[5], f[6], f[7]);
  } else {
    uint64_t raw = reinterpret_cast<IntGate>(&mpkbox_gate_enter)(
        i[0], i[1], i[2], i[3], i[4], i[5], f[0], f[1], f[2], f[3], f[4],
        f[5], f[6], f[7]);
    if constexpr (!std::is_void_v<R>) return FromIntRegister<R>(raw);
  }
}

}  // namespace mpkbox::internal

#endif  // MPKBOX_INTERNAL_CALL_H_
