#include "runtime/loader/elf_relocation.h"

#include <elf.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/loader/elf_tls.h"

namespace mpkbox::internal {

uint64_t* RelocationTarget(const ElfObject& obj, size_t i) {
  const Elf64_Rela& r = obj.relocations[i];
  // Only writable segments: a relocation into code would write
  // instructions the scan never saw (text relocations are refused).
  if (obj.SegmentRoom(r.r_offset, /*writable_only=*/true) <
      sizeof(uint64_t)) {
    return nullptr;
  }
  return reinterpret_cast<uint64_t*>(obj.base + r.r_offset);
}

absl::Status ApplyRelocation(ElfObject& obj, size_t i,
                             const SymbolScope& scope) {
  auto where = [&] { return CannotLoad(scope.compartment, obj); };
  const Elf64_Rela& r = obj.relocations[i];
  const uint32_t type = ELF64_R_TYPE(r.r_info);
  if (type == R_X86_64_NONE) return absl::OkStatus();
  uint64_t* target = RelocationTarget(obj, i);
  if (target == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: relocation %u writes outside its writable segments", where(),
        i));
  }
  switch (type) {
    case R_X86_64_RELATIVE:
      *target = obj.base + r.r_addend;
      break;
    case R_X86_64_64:
    case R_X86_64_GLOB_DAT:
    case R_X86_64_JUMP_SLOT: {
      bool pending = false;
      absl::StatusOr<uintptr_t> s =
          ResolveSymbol(obj, ELF64_R_SYM(r.r_info), scope, &pending);
      if (!s.ok()) return s.status();
      if (pending) {
        obj.ifunc_relocations.push_back(i);
        break;
      }
      *target = *s + (type == R_X86_64_64 ? r.r_addend : 0);
      break;
    }
    case R_X86_64_IRELATIVE:
      obj.ifunc_relocations.push_back(i);
      break;
    case R_X86_64_DTPMOD64:
    case R_X86_64_DTPOFF64: {
      absl::StatusOr<TlsSymbol> s =
          ResolveTlsSymbol(obj, ELF64_R_SYM(r.r_info), scope);
      if (!s.ok()) return s.status();
      *target = type == R_X86_64_DTPMOD64 ? s->module : s->offset + r.r_addend;
      break;
    }
    case R_X86_64_TPOFF64:
      return RefuseInitialExec(where(), "R_X86_64_TPOFF64");
    case R_X86_64_TLSDESC:
      return absl::UnimplementedError(absl::StrCat(
          where(), ": it uses TLS descriptors (R_X86_64_TLSDESC, "
                   "-mtls-dialect=gnu2), which mpkbox's loader does not "
                   "support; rebuild it with -mtls-dialect=gnu"));
    case R_X86_64_COPY:
      return absl::UnimplementedError(
          absl::StrCat(where(), ": copy relocations"));
    default:
      return absl::UnimplementedError(absl::StrFormat(
          "%s: relocation type %u is not supported", where(), type));
  }
  return absl::OkStatus();
}

absl::Status ApplyRelocations(ElfObject& obj, const SymbolScope& scope) {
  for (size_t i = 0; i < obj.relocations.size(); ++i) {
    if (absl::Status s = ApplyRelocation(obj, i, scope); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace mpkbox::internal
