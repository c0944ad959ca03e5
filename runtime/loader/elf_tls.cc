#include "runtime/loader/elf_tls.h"

#include <elf.h>

#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "allocator/compartment_heap.h"
#include "allocator/heap_cache.h"

namespace mpkbox::internal {
namespace {

// Far above what the target libraries need (libstdc++: 32 bytes).
constexpr uint64_t kMaxTlsBytes = uint64_t{1} << 20;
constexpr uint64_t kMaxTlsAlign = uint64_t{1} << 16;

}  // namespace

absl::Status RefuseInitialExec(absl::string_view where,
                               absl::string_view marker) {
  return absl::UnimplementedError(absl::StrFormat(
      "%s: it uses the initial-exec TLS model (%s): its code reaches "
      "thread-local variables at a fixed offset from the host thread's FS "
      "base, in the host's static TLS, which compartment memory cannot back; "
      "rebuild it with -ftls-model=global-dynamic",
      where, marker));
}

absl::Status SetUpTls(ElfObject& obj, const Elf64_Phdr& tls,
                      absl::Span<const uint8_t> file, size_t module,
                      CompartmentHeap* heap, absl::string_view where) {
  const uint64_t align = tls.p_align == 0 ? 1 : tls.p_align;
  if (tls.p_filesz > tls.p_memsz || tls.p_memsz > kMaxTlsBytes ||
      (align & (align - 1)) != 0 || align > kMaxTlsAlign ||
      tls.p_offset > file.size() || tls.p_filesz > file.size() - tls.p_offset) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: PT_TLS is malformed or larger than %u bytes", where,
        kMaxTlsBytes));
  }
  if (module > kMaxTlsModules) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: more than %u objects with thread-local storage in one "
        "compartment",
        where, kMaxTlsModules));
  }
  TlsImage image;
  image.bytes.assign(file.begin() + tls.p_offset,
                     file.begin() + tls.p_offset + tls.p_filesz);
  image.size = tls.p_memsz == 0 ? 1 : tls.p_memsz;
  image.align = align;
  obj.tls_module = module;
  obj.tls_size = tls.p_memsz;
  heap->SetTlsModule(module, std::move(image));
  return absl::OkStatus();
}

absl::StatusOr<TlsSymbol> ResolveTlsSymbol(const ElfObject& obj,
                                           uint32_t index,
                                           const SymbolScope& scope) {
  const std::string where = CannotLoad(scope.compartment, obj);
  if (index == 0) {  // local-dynamic: the object's own block
    if (obj.tls_module == 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: a TLS relocation, but no PT_TLS", where));
    }
    return TlsSymbol{obj.tls_module, 0};
  }
  if (index >= obj.syms.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: a relocation names symbol %u of %u", where, index,
        obj.syms.size()));
  }
  const Elf64_Sym& sym = obj.syms[index];
  const char* name = obj.String(sym.st_name);
  auto in = [&](const ElfObject& o, uint32_t i) -> absl::StatusOr<TlsSymbol> {
    const Elf64_Sym& d = o.syms[i];
    if (ELF64_ST_TYPE(d.st_info) != STT_TLS || o.tls_module == 0 ||
        d.st_value > o.tls_size) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: '%s' of '%s' is not a thread-local variable of its PT_TLS",
          where, name, o.path));
    }
    return TlsSymbol{o.tls_module, d.st_value};
  };
  if (sym.st_shndx != SHN_UNDEF) return in(obj, index);
  // No versions needed: a TLS symbol has one definition in a compartment.
  for (const auto& o : scope.objects) {
    if (uint32_t i = FindDefinition(*o, name, ""); i != 0) return in(*o, i);
  }
  return absl::UnimplementedError(absl::StrFormat(
      "%s: thread-local '%s' is defined by no object of the compartment; "
      "the host's thread-local variables are not shared",
      where, name));
}

}  // namespace mpkbox::internal
