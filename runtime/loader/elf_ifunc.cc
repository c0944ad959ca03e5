#include "runtime/loader/elf_ifunc.h"

#include <elf.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "runtime/loader/elf_relocation.h"

namespace mpkbox::internal {
namespace {

// Runs the resolver at obj.base + vaddr, which must be obj's code, and
// checks its result is code of one of the compartment's objects: the
// address is bound where loaded code calls it.
absl::StatusOr<uintptr_t> RunResolver(const ElfObject& obj, uint64_t vaddr,
                                      absl::string_view name,
                                      const SymbolScope& scope,
                                      const ResolveInside& resolve) {
  const std::string where = CannotLoad(scope.compartment, obj);
  if (!obj.InCode(vaddr, 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: the resolver of IFUNC '%s' is not in its code", where, name));
  }
  absl::StatusOr<uintptr_t> v = resolve(obj.base + vaddr);
  if (!v.ok()) {
    return absl::Status(v.status().code(),
                        absl::StrFormat("%s: the resolver of IFUNC '%s' "
                                        "failed: %s",
                                        where, name, v.status().message()));
  }
  for (const auto& o : scope.objects) {
    if (*v >= o->base && o->InCode(*v - o->base, 1)) return *v;
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s: the resolver of IFUNC '%s' returned 0x%x, which is not code of "
      "the compartment's objects",
      where, name, *v));
}

}  // namespace

absl::Status ResolveIfuncs(ElfObject& obj, const SymbolScope& scope,
                           const ResolveInside& resolve) {
  for (uint32_t i = 0; i < obj.syms.size(); ++i) {
    const Elf64_Sym& s = obj.syms[i];
    if (s.st_shndx == SHN_UNDEF || ELF64_ST_TYPE(s.st_info) != STT_GNU_IFUNC) {
      continue;
    }
    absl::StatusOr<uintptr_t> v =
        RunResolver(obj, s.st_value, obj.String(s.st_name), scope, resolve);
    if (!v.ok()) return v.status();
    obj.ifuncs[i] = *v;
  }
  std::vector<size_t> pending = std::move(obj.ifunc_relocations);
  obj.ifunc_relocations.clear();
  for (size_t i : pending) {
    const Elf64_Rela& r = obj.relocations[i];
    if (ELF64_R_TYPE(r.r_info) != R_X86_64_IRELATIVE) {
      // Its definition is resolved now.
      if (absl::Status s = ApplyRelocation(obj, i, scope); !s.ok()) return s;
      continue;
    }
    const auto vaddr = static_cast<uint64_t>(r.r_addend);
    absl::StatusOr<uintptr_t> v = RunResolver(
        obj, vaddr, absl::StrFormat("at 0x%x", vaddr), scope, resolve);
    if (!v.ok()) return v.status();
    *RelocationTarget(obj, i) = *v;  // checked when it was deferred
  }
  return absl::OkStatus();
}

}  // namespace mpkbox::internal
