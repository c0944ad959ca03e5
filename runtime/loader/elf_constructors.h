// An object's constructors (DT_INIT, DT_INIT_ARRAY) and destructors
// (DT_FINI_ARRAY, DT_FINI), run inside the compartment in ELF order.
#ifndef MPKBOX_RUNTIME_LOADER_ELF_CONSTRUCTORS_H_
#define MPKBOX_RUNTIME_LOADER_ELF_CONSTRUCTORS_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "runtime/loader/elf_object.h"

namespace mpkbox::internal {

// Runs a constructor or destructor inside (ElfLoader::Target::run_inside).
using RunInside = std::function<absl::Status(uintptr_t fn)>;

// Every constructor, each checked to lie in the image; the first failure
// ends it. `where` starts every error message.
absl::Status RunConstructors(ElfObject& obj, const RunInside& run_inside,
                             absl::string_view where);

// The destructors of a constructed object, once. False if one failed: the
// caller runs no more.
bool RunDestructors(ElfObject& obj, const RunInside& run_inside);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_ELF_CONSTRUCTORS_H_
