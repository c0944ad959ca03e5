// Symbol lookup in loaded objects: their GNU or SysV hash tables and symbol
// versions, read from the host-owned copies in ElfObject, every index
// bounds-checked.
#ifndef MPKBOX_RUNTIME_LOADER_ELF_SYMBOLS_H_
#define MPKBOX_RUNTIME_LOADER_ELF_SYMBOLS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/loader/elf_object.h"

namespace mpkbox::internal {

// The best definition of name@version in obj: the exact version, else the
// default one. Returns the symbol index, or 0. Every index is checked
// against the copies' sizes.
uint32_t FindDefinition(const ElfObject& obj, const char* name,
                        const char* version);

// Where an object's undefined symbols may bind.
struct SymbolScope {
  absl::string_view compartment;  // for messages
  const absl::flat_hash_map<std::string, uintptr_t>& exposed;
  const std::vector<std::unique_ptr<ElfObject>>& objects;  // in load order
};

// The address symbol `index` of `obj` stands for: its own definition, else
// what the host exposed, else the first definition in `scope.objects`, else
// the host's (import_policy.h). Refuses TLS symbols (elf_tls.h binds
// those). An IFUNC binds to what its resolver returned (elf_ifunc.h); one
// of obj itself whose resolver has not run yet sets *pending_ifunc (when
// given) and returns 0.
absl::StatusOr<uintptr_t> ResolveSymbol(const ElfObject& obj, uint32_t index,
                                        const SymbolScope& scope,
                                        bool* pending_ifunc = nullptr);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_ELF_SYMBOLS_H_
