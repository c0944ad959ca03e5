// Files for loaded code. For now nothing is granted: every open fails with
// ENOENT, so libraries take their fallback paths.
#include "runtime/compartment_libc/files.h"

#include <errno.h>

#include "runtime/compartment_libc/compartment_libc.h"

namespace mpkbox::internal {

int CompartmentOpen(const char*, int, unsigned) {
  *mpkbox_compartment_errno_location() = ENOENT;
  return -1;
}

}  // namespace mpkbox::internal
