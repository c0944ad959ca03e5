#include "runtime/loader/elf_relocation.h"

#include <elf.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mpkbox::internal {

absl::Status ApplyRelocations(ElfObject& obj, const SymbolScope& scope) {
  auto where = [&] { return CannotLoad(scope.compartment, obj); };
  for (size_t i = 0; i < obj.relocations.size(); ++i) {
    const Elf64_Rela& r = obj.relocations[i];
    const uint32_t type = ELF64_R_TYPE(r.r_info);
    if (type == R_X86_64_NONE) continue;
    // Only writable segments: a relocation into code would write
    // instructions the scan never saw (text relocations are refused).
    if (obj.SegmentRoom(r.r_offset, /*writable_only=*/true) <
        sizeof(uint64_t)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: relocation %u writes outside its writable segments", where(),
          i));
    }
    auto* target = reinterpret_cast<uint64_t*>(obj.base + r.r_offset);
    switch (type) {
      case R_X86_64_RELATIVE:
        *target = obj.base + r.r_addend;
        break;
      case R_X86_64_64:
      case R_X86_64_GLOB_DAT:
      case R_X86_64_JUMP_SLOT: {
        absl::StatusOr<uintptr_t> s =
            ResolveSymbol(obj, ELF64_R_SYM(r.r_info), scope);
        if (!s.ok()) return s.status();
        *target = *s + (type == R_X86_64_64 ? r.r_addend : 0);
        break;
      }
      case R_X86_64_IRELATIVE:
        return absl::UnimplementedError(absl::StrCat(
            where(), ": it has IFUNC relocations (R_X86_64_IRELATIVE), "
                     "which mpkbox's loader does not support"));
      case R_X86_64_DTPMOD64:
      case R_X86_64_DTPOFF64:
      case R_X86_64_TPOFF64:
      case R_X86_64_TLSDESC:
        return absl::UnimplementedError(absl::StrCat(
            where(), ": it uses thread-local storage, which mpkbox's "
                     "loader does not support"));
      case R_X86_64_COPY:
        return absl::UnimplementedError(
            absl::StrCat(where(), ": copy relocations"));
      default:
        return absl::UnimplementedError(absl::StrFormat(
            "%s: relocation type %u is not supported", where(), type));
    }
  }
  return absl::OkStatus();
}

}  // namespace mpkbox::internal
