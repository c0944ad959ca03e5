// One object ElfLoader loaded, as every stage of loading sees it.
#ifndef MPKBOX_RUNTIME_LOADER_ELF_OBJECT_H_
#define MPKBOX_RUNTIME_LOADER_ELF_OBJECT_H_

#include <elf.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace mpkbox::internal {

// Its dynamic tables are host-owned copies, taken before relocation and
// bounds-checked: the file is untrusted, and the image is the compartment's
// to rewrite once it runs.
struct ElfObject {
  std::string path;
  std::string soname;
  uintptr_t base = 0;  // load bias
  size_t span = 0;     // bytes from base
  std::vector<Elf64_Phdr> phdrs;
  uint64_t phdrs_vaddr = 0;  // where the image holds them, 0 if it does not
  std::vector<Elf64_Sym> syms;
  std::string strings;
  bool gnu_hash = false;
  std::vector<uint32_t> hash;       // DT_GNU_HASH or DT_HASH
  std::vector<uint16_t> versym;     // empty: no versions
  std::vector<uint8_t> verdef, verneed;
  size_t verdefnum = 0, verneednum = 0;
  std::vector<Elf64_Rela> relocations;  // DT_RELA, then DT_JMPREL
  uintptr_t init = 0, fini = 0;
  uintptr_t init_array = 0, fini_array = 0;
  size_t ninit = 0, nfini = 0;
  std::vector<std::string> needed;
  bool constructed = false;
  // PT_TLS (elf_tls.cc): its module id in the compartment, 0 if none.
  size_t tls_module = 0;
  uint64_t tls_size = 0;
  // IFUNC definitions whose resolver ran inside: symbol index -> address;
  // and the relocations waiting for this object's resolvers (elf_ifunc.cc).
  absl::flat_hash_map<uint32_t, uintptr_t> ifuncs;
  std::vector<size_t> ifunc_relocations;

  bool InSpan(uintptr_t vaddr, size_t bytes) const {
    return vaddr <= span && bytes <= span - vaddr;
  }
  // Bytes from vaddr to the end of the loaded segment holding it (0 if
  // none): gaps between segments are PROT_NONE.
  size_t SegmentRoom(uint64_t vaddr, bool writable_only = false) const {
    for (const Elf64_Phdr& ph : phdrs) {
      if (ph.p_type != PT_LOAD || (writable_only && !(ph.p_flags & PF_W))) {
        continue;
      }
      if (vaddr >= ph.p_vaddr && vaddr - ph.p_vaddr < ph.p_memsz) {
        return ph.p_memsz - (vaddr - ph.p_vaddr);
      }
    }
    return 0;
  }
  // [vaddr, vaddr + bytes) lies in one executable segment.
  bool InCode(uint64_t vaddr, size_t bytes) const {
    for (const Elf64_Phdr& ph : phdrs) {
      if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X) && vaddr >= ph.p_vaddr &&
          vaddr - ph.p_vaddr < ph.p_memsz &&
          bytes <= ph.p_memsz - (vaddr - ph.p_vaddr)) {
        return true;
      }
    }
    return false;
  }
  const char* String(size_t offset) const {
    return offset < strings.size() ? strings.c_str() + offset : "";
  }
};

// "compartment 'c': cannot load '/path/libx.so'", how errors about loading
// `obj` start.
inline std::string CannotLoad(absl::string_view compartment,
                              const ElfObject& obj) {
  return absl::StrFormat("compartment '%s': cannot load '%s'", compartment,
                         obj.path);
}

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_ELF_OBJECT_H_
