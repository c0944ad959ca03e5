// Thread-local storage of loaded objects. Each object with PT_TLS gets a
// module id in its compartment; its image (a host copy of the file's bytes)
// goes to the compartment's heap, which gives each thread its own block in
// compartment memory (allocator/tls_blocks.cc) when the loader's
// __tls_get_addr (runtime/compartment_libc/tls.cc) first asks for it.
//
// Supported: the dynamic models (general- and local-dynamic:
// R_X86_64_DTPMOD64 and R_X86_64_DTPOFF64). Refused, naming the model:
// initial- and local-exec (R_X86_64_TPOFF64, DF_STATIC_TLS), which address
// the host thread's static TLS through FS, and TLS descriptors
// (R_X86_64_TLSDESC).
#ifndef MPKBOX_RUNTIME_LOADER_ELF_TLS_H_
#define MPKBOX_RUNTIME_LOADER_ELF_TLS_H_

#include <elf.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "runtime/loader/elf_object.h"
#include "runtime/loader/elf_symbols.h"

namespace mpkbox::internal {

class CompartmentHeap;

// Checks PT_TLS against `file`, makes obj module `module` and registers its
// image with `heap`. `where` starts every error message.
absl::Status SetUpTls(ElfObject& obj, const Elf64_Phdr& tls,
                      absl::Span<const uint8_t> file, size_t module,
                      CompartmentHeap* heap, absl::string_view where);

// What R_X86_64_DTPMOD64 and R_X86_64_DTPOFF64 write for symbol `index` of
// obj (0: obj's own block): the defining object's module and the symbol's
// offset in its block. Only the compartment's objects define TLS symbols.
struct TlsSymbol {
  uint64_t module;
  uint64_t offset;
};
absl::StatusOr<TlsSymbol> ResolveTlsSymbol(const ElfObject& obj,
                                           uint32_t index,
                                           const SymbolScope& scope);

// The refusal of the initial-exec model; `marker` is what showed it
// (DF_STATIC_TLS, R_X86_64_TPOFF64).
absl::Status RefuseInitialExec(absl::string_view where,
                               absl::string_view marker);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_ELF_TLS_H_
