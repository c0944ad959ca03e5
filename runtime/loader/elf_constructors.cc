#include "runtime/loader/elf_constructors.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mpkbox::internal {

absl::Status RunConstructors(ElfObject& obj, const RunInside& run_inside,
                             absl::string_view where) {
  std::vector<uintptr_t> ctors;
  if (obj.init != 0) ctors.push_back(obj.init);
  for (size_t i = 0; i < obj.ninit; ++i) {
    const uintptr_t f = reinterpret_cast<const uintptr_t*>(obj.init_array)[i];
    if (f != 0 && f != ~uintptr_t{0}) ctors.push_back(f);
  }
  for (uintptr_t f : ctors) {
    if (!obj.InSpan(f - obj.base, 1)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: a constructor lies outside the image", where));
    }
    if (absl::Status s = run_inside(f); !s.ok()) {
      return absl::Status(
          s.code(),
          absl::StrCat(where, ": its constructor failed: ", s.message()));
    }
  }
  obj.constructed = true;
  return absl::OkStatus();
}

bool RunDestructors(ElfObject& obj, const RunInside& run_inside) {
  if (!obj.constructed) return true;
  obj.constructed = false;
  for (size_t i = obj.nfini; i > 0; --i) {
    const uintptr_t f =
        reinterpret_cast<const uintptr_t*>(obj.fini_array)[i - 1];
    if (f == 0 || f == ~uintptr_t{0} || !obj.InSpan(f - obj.base, 1)) {
      continue;
    }
    if (!run_inside(f).ok()) return false;  // faulted: stop there
  }
  return obj.fini == 0 || run_inside(obj.fini).ok();
}

}  // namespace mpkbox::internal
