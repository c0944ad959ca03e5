// An object's dynamic section and the tables it points to (symbols,
// strings, hash table, versions, relocations, constructors), copied from
// the mapped image into host memory and checked to lie in loaded segments:
// the gaps between segments are PROT_NONE, and the image is the
// compartment's to rewrite once it runs.
#ifndef MPKBOX_RUNTIME_LOADER_ELF_DYNAMIC_H_
#define MPKBOX_RUNTIME_LOADER_ELF_DYNAMIC_H_

#include <elf.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "runtime/loader/elf_object.h"

namespace mpkbox::internal {

// Fills obj's tables from the image mapped at obj.base. Refuses REL, RELR
// and text relocations, and static TLS (the initial-exec model). `where` starts
// every error message.
absl::Status ReadDynamic(ElfObject& obj, const Elf64_Phdr& dynamic,
                         absl::string_view where);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_ELF_DYNAMIC_H_
