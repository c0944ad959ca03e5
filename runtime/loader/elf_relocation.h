// Applies an object's relocations to its image, with host rights, before
// the final protections: only into writable segments, so no relocation
// writes code the scan never saw.
#ifndef MPKBOX_RUNTIME_LOADER_ELF_RELOCATION_H_
#define MPKBOX_RUNTIME_LOADER_ELF_RELOCATION_H_

#include <cstddef>

#include "absl/status/status.h"
#include "runtime/loader/elf_object.h"
#include "runtime/loader/elf_symbols.h"

namespace mpkbox::internal {

// RELATIVE, 64, GLOB_DAT, JUMP_SLOT, DTPMOD64 and DTPOFF64 (elf_tls.h);
// IRELATIVE and references to obj's own IFUNCs wait in
// obj.ifunc_relocations for its resolvers (elf_ifunc.h). The other types
// are refused, naming the TLS model where they are one.
absl::Status ApplyRelocations(ElfObject& obj, const SymbolScope& scope);

// Relocation `i` of obj, one of the above.
absl::Status ApplyRelocation(ElfObject& obj, size_t i,
                             const SymbolScope& scope);

// Where relocation `i` of obj writes (checked: 8 bytes of a writable
// segment), or 0.
uint64_t* RelocationTarget(const ElfObject& obj, size_t i);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_ELF_RELOCATION_H_
