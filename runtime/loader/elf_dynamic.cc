#include "runtime/loader/elf_dynamic.h"

#include <elf.h>
#include <string.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/loader/elf_tls.h"

namespace mpkbox::internal {
namespace {

// The dynamic entries read into locals; addresses are offsets from the base.
struct DynamicTags {
  uint64_t symtab = 0, strtab = 0, strsz = 0, gnu_hash = 0, sysv_hash = 0,
           versym = 0, verdef = 0, verneed = 0, rela = 0, relasz = 0,
           jmprel = 0, pltrelsz = 0, init_arraysz = 0, fini_arraysz = 0,
           soname = 0, syment = sizeof(Elf64_Sym);
  std::vector<uint64_t> needed;
};

// Copies `bytes` at `vaddr` of the image if they lie in one loaded segment.
bool CopyFromImage(const ElfObject& obj, uint64_t vaddr, uint64_t bytes,
                   void* out) {
  if (vaddr == 0 || obj.SegmentRoom(vaddr) < bytes) return false;
  memcpy(out, reinterpret_cast<const void*>(obj.base + vaddr), bytes);
  return true;
}

absl::Status Bad(absl::string_view where, const char* what) {
  return absl::InvalidArgumentError(absl::StrCat(
      where, ": ", what, " is missing, malformed or outside the segments"));
}

// The entries the loader refuses.
absl::Status CheckSupported(const Elf64_Dyn& d, absl::string_view where) {
  const uint64_t v = d.d_un.d_val;
  switch (d.d_tag) {
    case DT_PLTREL:
      if (v != DT_RELA) {
        return absl::UnimplementedError(
            absl::StrCat(where, ": PLT relocations are not RELA"));
      }
      break;
    case DT_REL:
      return absl::UnimplementedError(
          absl::StrCat(where, ": REL relocations (only RELA)"));
    case DT_RELR:
      return absl::UnimplementedError(
          absl::StrCat(where, ": DT_RELR relocations"));
    case DT_TEXTREL:
      return absl::UnimplementedError(
          absl::StrCat(where, ": text relocations (DT_TEXTREL)"));
    case DT_FLAGS:
      if (v & DF_TEXTREL) {
        return absl::UnimplementedError(
            absl::StrCat(where, ": text relocations (DF_TEXTREL)"));
      }
      if (v & DF_STATIC_TLS) {
        return RefuseInitialExec(where, "DF_STATIC_TLS");
      }
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

// The entries up to DT_NULL. Version counts and constructor addresses go
// straight into obj.
absl::StatusOr<DynamicTags> ReadTags(ElfObject& obj, const Elf64_Phdr& dynamic,
                                     absl::string_view where) {
  if (obj.SegmentRoom(dynamic.p_vaddr) < dynamic.p_memsz) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": PT_DYNAMIC lies outside the segments"));
  }
  std::vector<Elf64_Dyn> dyn(dynamic.p_memsz / sizeof(Elf64_Dyn));
  memcpy(dyn.data(), reinterpret_cast<const void*>(obj.base + dynamic.p_vaddr),
         dyn.size() * sizeof(Elf64_Dyn));
  DynamicTags t;
  for (const Elf64_Dyn& d : dyn) {
    if (d.d_tag == DT_NULL) break;
    if (absl::Status s = CheckSupported(d, where); !s.ok()) return s;
    const uint64_t v = d.d_un.d_val;
    switch (d.d_tag) {
      case DT_NEEDED: t.needed.push_back(v); break;
      case DT_SONAME: t.soname = v; break;
      case DT_SYMTAB: t.symtab = v; break;
      case DT_SYMENT: t.syment = v; break;
      case DT_STRTAB: t.strtab = v; break;
      case DT_STRSZ: t.strsz = v; break;
      case DT_GNU_HASH: t.gnu_hash = v; break;
      case DT_HASH: t.sysv_hash = v; break;
      case DT_VERSYM: t.versym = v; break;
      case DT_VERDEF: t.verdef = v; break;
      case DT_VERDEFNUM: obj.verdefnum = v; break;
      case DT_VERNEED: t.verneed = v; break;
      case DT_VERNEEDNUM: obj.verneednum = v; break;
      case DT_RELA: t.rela = v; break;
      case DT_RELASZ: t.relasz = v; break;
      case DT_JMPREL: t.jmprel = v; break;
      case DT_PLTRELSZ: t.pltrelsz = v; break;
      case DT_INIT: obj.init = v; break;
      case DT_FINI: obj.fini = v; break;
      case DT_INIT_ARRAY: obj.init_array = v; break;
      case DT_INIT_ARRAYSZ: t.init_arraysz = v; break;
      case DT_FINI_ARRAY: obj.fini_array = v; break;
      case DT_FINI_ARRAYSZ: t.fini_arraysz = v; break;
      default: break;
    }
  }
  return t;
}

// DT_GNU_HASH, which says how many symbols there are.
absl::Status CopyGnuHash(ElfObject& obj, const DynamicTags& t,
                         absl::string_view where) {
  obj.gnu_hash = true;
  uint32_t head[4];
  if (!CopyFromImage(obj, t.gnu_hash, sizeof(head), head)) {
    return Bad(where, "DT_GNU_HASH");
  }
  const uint64_t nbuckets = head[0], symoffset = head[1];
  const uint64_t chain = 4 + 2 * uint64_t{head[2]} + nbuckets;  // words
  const uint64_t room = obj.SegmentRoom(t.gnu_hash) / 4;
  if (chain > room) return Bad(where, "DT_GNU_HASH");
  obj.hash.resize(chain);
  CopyFromImage(obj, t.gnu_hash, chain * 4, obj.hash.data());
  uint64_t last = 0;
  for (uint64_t b = 0; b < nbuckets; ++b) {
    last = std::max<uint64_t>(last, obj.hash[4 + 2 * head[2] + b]);
  }
  uint64_t nsyms = symoffset;
  if (last >= symoffset) {
    // Walk the last chain to its end, inside the table's segment.
    const auto* words =
        reinterpret_cast<const uint32_t*>(obj.base + t.gnu_hash);
    uint64_t i = last;
    for (;; ++i) {
      if (chain + (i - symoffset) >= room) return Bad(where, "DT_GNU_HASH");
      if (words[chain + (i - symoffset)] & 1) break;
    }
    nsyms = i + 1;
    obj.hash.resize(chain + (nsyms - symoffset));
    CopyFromImage(obj, t.gnu_hash, obj.hash.size() * 4, obj.hash.data());
  }
  if (nsyms > (uint64_t{1} << 24) ||
      obj.SegmentRoom(t.symtab) / sizeof(Elf64_Sym) < nsyms) {
    return Bad(where, "DT_GNU_HASH or DT_SYMTAB");
  }
  obj.syms.resize(nsyms);
  return absl::OkStatus();
}

// DT_HASH, whose nchain is the number of symbols.
absl::Status CopySysvHash(ElfObject& obj, const DynamicTags& t,
                          absl::string_view where) {
  uint32_t head[2];
  if (!CopyFromImage(obj, t.sysv_hash, sizeof(head), head)) {
    return Bad(where, "DT_HASH");
  }
  const uint64_t words = 2 + uint64_t{head[0]} + head[1];
  if (words * 4 > obj.SegmentRoom(t.sysv_hash) || head[1] > (1u << 24) ||
      obj.SegmentRoom(t.symtab) / sizeof(Elf64_Sym) < head[1]) {
    return Bad(where, "DT_HASH or DT_SYMTAB");
  }
  obj.hash.resize(words);
  CopyFromImage(obj, t.sysv_hash, words * 4, obj.hash.data());
  obj.syms.resize(head[1]);
  return absl::OkStatus();
}

// The hash table, then as many symbols as it says, the strings and the
// version tables.
absl::Status CopySymbols(ElfObject& obj, const DynamicTags& t,
                         absl::string_view where) {
  if (t.gnu_hash == 0 && t.sysv_hash == 0) {
    return Bad(where, "the symbol hash table");
  }
  if (absl::Status s = t.gnu_hash != 0 ? CopyGnuHash(obj, t, where)
                                       : CopySysvHash(obj, t, where);
      !s.ok()) {
    return s;
  }
  if (t.syment != sizeof(Elf64_Sym) ||
      !CopyFromImage(obj, t.symtab, obj.syms.size() * sizeof(Elf64_Sym),
                     obj.syms.data())) {
    return Bad(where, "DT_SYMTAB");
  }
  if (t.strsz > obj.SegmentRoom(t.strtab)) return Bad(where, "DT_STRTAB");
  obj.strings.resize(t.strsz);
  if (!CopyFromImage(obj, t.strtab, t.strsz, obj.strings.data())) {
    return Bad(where, "DT_STRTAB");
  }
  if (t.versym != 0) {
    obj.versym.resize(obj.syms.size());
    if (!CopyFromImage(obj, t.versym, obj.versym.size() * 2,
                       obj.versym.data())) {
      return Bad(where, "DT_VERSYM");
    }
  }
  // Version records are read with bounds from these copies.
  for (auto [vaddr, out] : {std::pair{t.verdef, &obj.verdef},
                            std::pair{t.verneed, &obj.verneed}}) {
    if (vaddr == 0) continue;
    out->resize(std::min<uint64_t>(obj.SegmentRoom(vaddr), 1 << 20));
    CopyFromImage(obj, vaddr, out->size(), out->data());
  }
  return absl::OkStatus();
}

// DT_RELA, then DT_JMPREL.
absl::Status CopyRelocations(ElfObject& obj, const DynamicTags& t,
                             absl::string_view where) {
  for (auto [vaddr, bytes] : {std::pair{t.rela, t.relasz},
                              std::pair{t.jmprel, t.pltrelsz}}) {
    if (bytes == 0) continue;
    if (bytes > obj.SegmentRoom(vaddr)) return Bad(where, "a relocation table");
    const size_t first = obj.relocations.size();
    obj.relocations.resize(first + bytes / sizeof(Elf64_Rela));
    if (!CopyFromImage(obj, vaddr,
                       (obj.relocations.size() - first) * sizeof(Elf64_Rela),
                       obj.relocations.data() + first)) {
      return Bad(where, "a relocation table");
    }
  }
  return absl::OkStatus();
}

// Constructors and destructors lie in loaded segments; then their
// addresses are made absolute.
absl::Status CheckConstructors(ElfObject& obj, const DynamicTags& t,
                               absl::string_view where) {
  if ((t.init_arraysz != 0 &&
       obj.SegmentRoom(obj.init_array) < t.init_arraysz) ||
      (t.fini_arraysz != 0 &&
       obj.SegmentRoom(obj.fini_array) < t.fini_arraysz) ||
      (obj.init != 0 && obj.SegmentRoom(obj.init) == 0) ||
      (obj.fini != 0 && obj.SegmentRoom(obj.fini) == 0)) {
    return Bad(where, "a constructor or destructor");
  }
  obj.init = obj.init != 0 ? obj.base + obj.init : 0;
  obj.fini = obj.fini != 0 ? obj.base + obj.fini : 0;
  obj.init_array = obj.init_array != 0 ? obj.base + obj.init_array : 0;
  obj.fini_array = obj.fini_array != 0 ? obj.base + obj.fini_array : 0;
  obj.ninit = t.init_arraysz / sizeof(uintptr_t);
  obj.nfini = t.fini_arraysz / sizeof(uintptr_t);
  return absl::OkStatus();
}

}  // namespace

absl::Status ReadDynamic(ElfObject& obj, const Elf64_Phdr& dynamic,
                         absl::string_view where) {
  absl::StatusOr<DynamicTags> tags = ReadTags(obj, dynamic, where);
  if (!tags.ok()) return tags.status();
  if (absl::Status s = CopySymbols(obj, *tags, where); !s.ok()) return s;
  if (absl::Status s = CopyRelocations(obj, *tags, where); !s.ok()) return s;
  if (absl::Status s = CheckConstructors(obj, *tags, where); !s.ok()) {
    return s;
  }
  for (uint64_t n : tags->needed) obj.needed.emplace_back(obj.String(n));
  if (tags->soname != 0) obj.soname = obj.String(tags->soname);
  return absl::OkStatus();
}

}  // namespace mpkbox::internal
