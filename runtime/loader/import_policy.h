// What the undefined symbols of loaded code bind to when no object of the
// compartment defines them. The C library stays the host's (one copy, in
// key-0 code) and runs with the compartment's rights, so only functions that
// touch nothing but their arguments, the compartment's heap and the syscall
// policy are bound; the rest bind to a refused-import trap: calling one, or
// reading a refused variable such as `stderr`, ends the call with
// kPermissionDenied naming the symbol.
#ifndef MPKBOX_RUNTIME_LOADER_IMPORT_POLICY_H_
#define MPKBOX_RUNTIME_LOADER_IMPORT_POLICY_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mpkbox::internal {

// glibc's libraries: never loaded into a compartment.
bool IsHostLibrary(absl::string_view soname);

struct HostImport {
  uintptr_t address = 0;  // 0: no host library defines it
  bool refused = false;   // a trap address
  const char* why = "";   // for refused ones
};

// Binds `name` (with `version` if not empty) from the host's libraries.
HostImport BindHostImport(absl::string_view name, absl::string_view version);

// If `address` is (in) a refused import's trap, the import and why it is
// refused.
std::optional<std::string> RefusedImportAt(uintptr_t address);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_IMPORT_POLICY_H_
