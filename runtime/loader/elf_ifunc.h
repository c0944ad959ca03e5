// IFUNCs of a loaded object: each resolver is the object's own code (it
// reads CPU features), so it runs inside the compartment, through Call,
// once the object's other relocations are done and before its
// constructors, as in ld.so. Their results are checked to be code of the
// compartment's objects and bound: STT_GNU_IFUNC definitions (for other
// objects and Lookup) and R_X86_64_IRELATIVE.
#ifndef MPKBOX_RUNTIME_LOADER_ELF_IFUNC_H_
#define MPKBOX_RUNTIME_LOADER_ELF_IFUNC_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/loader/elf_object.h"
#include "runtime/loader/elf_symbols.h"

namespace mpkbox::internal {

// Runs a resolver, uintptr_t(void), inside; returns what it returned.
using ResolveInside = std::function<absl::StatusOr<uintptr_t>(uintptr_t fn)>;

// Runs obj's resolvers and applies obj.ifunc_relocations.
absl::Status ResolveIfuncs(ElfObject& obj, const SymbolScope& scope,
                           const ResolveInside& resolve);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_ELF_IFUNC_H_
