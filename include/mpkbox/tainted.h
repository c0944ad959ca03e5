// Tainted<T>: a value that came out of a compartment. The host gets at it only
// through a check it writes (Verify) or an escape hatch that names its reason
// (UnverifiedValue), so every unchecked use can be found with grep.
//
//   absl::StatusOr<mpkbox::Tainted<size_t>> n = box->Call(parse, buf, len);
//   size_t safe = n->Verify([&](size_t v) { return std::min(v, len); });
#ifndef MPKBOX_TAINTED_H_
#define MPKBOX_TAINTED_H_

#include <type_traits>
#include <utility>

#include "absl/strings/string_view.h"

namespace mpkbox {

namespace internal {
struct TaintedAccess;
}  // namespace internal

template <typename T>
class Tainted {
 public:
  static_assert(std::is_trivially_copyable_v<T>,
                "mpkbox::Tainted<T> holds plain values that cross a gate");

  // Runs check(raw) and returns whatever it returns: the trusted result.
  template <typename F>
  auto Verify(F&& check) const {
    return std::forward<F>(check)(value_);
  }

  // The raw value, unchecked. `why` documents the reason at the call site.
  T UnverifiedValue(absl::string_view why) const {
    static_cast<void>(why);
    return value_;
  }

 private:
  friend struct internal::TaintedAccess;
  // Only the runtime makes Tainted values; callbacks receive them from the
  // gate as raw registers (the layout is exactly a T).
  Tainted() = default;
  explicit Tainted(T value) : value_(value) {}

  T value_;
};

namespace internal {
struct TaintedAccess {
  template <typename T>
  static Tainted<T> Make(T value) {
    return Tainted<T>(value);
  }
};

template <typename T>
struct Untaint {
  using type = T;
};
template <typename T>
struct Untaint<Tainted<T>> {
  using type = T;
};
}  // namespace internal

}  // namespace mpkbox

#endif  // MPKBOX_TAINTED_H_
