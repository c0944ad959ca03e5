// Applies an object's relocations to its image, with host rights, before
// the final protections: only into writable segments, so no relocation
// writes code the scan never saw.
#ifndef MPKBOX_RUNTIME_LOADER_ELF_RELOCATION_H_
#define MPKBOX_RUNTIME_LOADER_ELF_RELOCATION_H_

#include "absl/status/status.h"
#include "runtime/loader/elf_object.h"
#include "runtime/loader/elf_symbols.h"

namespace mpkbox::internal {

// RELATIVE, 64, GLOB_DAT and JUMP_SLOT; the other types are refused.
absl::Status ApplyRelocations(ElfObject& obj, const SymbolScope& scope);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_ELF_RELOCATION_H_
