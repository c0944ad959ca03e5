// INTERIM (issue 15, THREADS): open and open64 fail through CompartmentOpen
// (files.h: ENOENT for now) so that sqlite3's /dev/urandom seed falls back
// to the time and the pid instead of trapping. The files concern's own
// table replaces this one (its entries win: it comes first in kTables).
#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/files.h"

namespace mpkbox::internal {
namespace {

// open(2) is variadic; the mode travels in the third integer register
// either way, as CompartmentOpen takes it.
int Open(const char* path, int flags, unsigned mode) {
  return CompartmentOpen(path, flags, mode);
}

}  // namespace

absl::Span<const LibcBinding> InterimFileBindings() {
  static const LibcBinding kBindings[] = {
      {"open", reinterpret_cast<void*>(&Open),
       "CompartmentOpen (files.h): for now fails with ENOENT"},
      {"open64", reinterpret_cast<void*>(&Open),
       "CompartmentOpen (files.h): for now fails with ENOENT"},
  };
  return kBindings;
}

}  // namespace mpkbox::internal
