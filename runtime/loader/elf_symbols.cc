#include "runtime/loader/elf_symbols.h"

#include <elf.h>
#include <string.h>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "runtime/loader/import_policy.h"

namespace mpkbox::internal {
namespace {

uint32_t GnuHash(const char* s) {
  uint32_t h = 5381;
  for (; *s; ++s) h = h * 33 + static_cast<unsigned char>(*s);
  return h;
}

uint32_t SysvHash(const char* s) {
  uint32_t h = 0;
  for (; *s; ++s) {
    h = (h << 4) + static_cast<unsigned char>(*s);
    uint32_t g = h & 0xf0000000;
    if (g != 0) h ^= g >> 24;
    h &= ~g;
  }
  return h;
}

template <typename T>
bool ReadAt(const std::vector<uint8_t>& bytes, size_t offset, T* out) {
  if (offset > bytes.size() || sizeof(T) > bytes.size() - offset) return false;
  memcpy(out, bytes.data() + offset, sizeof(T));
  return true;
}

// Version name of verneed index `index`, or "".
const char* NeededVersion(const ElfObject& obj, uint16_t index) {
  size_t at = 0;
  for (size_t i = 0; i < obj.verneednum; ++i) {
    Elf64_Verneed vn;
    if (!ReadAt(obj.verneed, at, &vn)) return "";
    size_t aux_at = at + vn.vn_aux;
    for (size_t j = 0; j < vn.vn_cnt; ++j) {
      Elf64_Vernaux aux;
      if (!ReadAt(obj.verneed, aux_at, &aux)) return "";
      if (aux.vna_other == index) return obj.String(aux.vna_name);
      if (aux.vna_next == 0) break;
      aux_at += aux.vna_next;
    }
    if (vn.vn_next == 0) break;
    at += vn.vn_next;
  }
  return "";
}

const char* DefinedVersion(const ElfObject& obj, uint16_t index) {
  size_t at = 0;
  for (size_t i = 0; i < obj.verdefnum; ++i) {
    Elf64_Verdef vd;
    if (!ReadAt(obj.verdef, at, &vd)) return "";
    Elf64_Verdaux aux;
    if (vd.vd_ndx == index && ReadAt(obj.verdef, at + vd.vd_aux, &aux)) {
      return obj.String(aux.vda_name);
    }
    if (vd.vd_next == 0) break;
    at += vd.vd_next;
  }
  return "";
}

}  // namespace

uint32_t FindDefinition(const ElfObject& obj, const char* name,
                        const char* version) {
  uint32_t best = 0;
  int best_rank = 0;
  auto consider = [&](uint32_t i) {
    if (i >= obj.syms.size()) return;
    const Elf64_Sym& s = obj.syms[i];
    if (s.st_shndx == SHN_UNDEF || strcmp(obj.String(s.st_name), name) != 0) {
      return;
    }
    const int bind = ELF64_ST_BIND(s.st_info);
    if (bind != STB_GLOBAL && bind != STB_WEAK) return;
    int rank = 1;
    if (i < obj.versym.size()) {
      const uint16_t v = obj.versym[i];
      if (version[0] != 0 &&
          strcmp(DefinedVersion(obj, v & 0x7fff), version) == 0) {
        rank = 3;
      } else if (!(v & 0x8000)) {
        rank = 2;  // the default version
      }
    }
    if (rank > best_rank) {
      best = i;
      best_rank = rank;
    }
  };
  const std::vector<uint32_t>& h = obj.hash;
  if (obj.gnu_hash) {
    const uint64_t nbuckets = h[0], symoffset = h[1], bloom_size = h[2];
    const uint64_t buckets = 4 + 2 * bloom_size, chain = buckets + nbuckets;
    if (nbuckets == 0 || chain > h.size()) return 0;
    const uint32_t hv = GnuHash(name);
    for (uint64_t i = h[buckets + hv % nbuckets];
         i >= symoffset && i < obj.syms.size() &&
         chain + (i - symoffset) < h.size();
         ++i) {
      const uint32_t c = h[chain + (i - symoffset)];
      if ((c | 1) == (hv | 1)) consider(static_cast<uint32_t>(i));
      if (c & 1) break;
    }
  } else if (h.size() >= 2) {
    const uint64_t nbucket = h[0], nchain = h[1];
    if (nbucket == 0 || 2 + nbucket + nchain > h.size()) return 0;
    size_t guard = 0;
    for (uint64_t i = h[2 + SysvHash(name) % nbucket];
         i != 0 && i < nchain && guard++ < nchain; i = h[2 + nbucket + i]) {
      consider(static_cast<uint32_t>(i));
    }
  }
  return best;
}

absl::StatusOr<uintptr_t> ResolveSymbol(const ElfObject& obj, uint32_t index,
                                        const SymbolScope& scope,
                                        bool* pending_ifunc) {
  auto where = [&scope](const ElfObject& o) {
    return CannotLoad(scope.compartment, o);
  };
  if (index >= obj.syms.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: a relocation names symbol %u of %u", where(obj), index,
        obj.syms.size()));
  }
  const Elf64_Sym& sym = obj.syms[index];
  const char* name = obj.String(sym.st_name);
  const int type = ELF64_ST_TYPE(sym.st_info);
  if (type == STT_TLS) {
    return absl::UnimplementedError(absl::StrFormat(
        "%s: '%s' is thread-local but not bound by a TLS relocation",
        where(obj), name));
  }
  auto definition = [&](const ElfObject& o,
                        uint32_t i) -> absl::StatusOr<uintptr_t> {
    const Elf64_Sym& d = o.syms[i];
    if (ELF64_ST_TYPE(d.st_info) == STT_GNU_IFUNC) {
      if (auto it = o.ifuncs.find(i); it != o.ifuncs.end()) return it->second;
      if (&o == &obj && pending_ifunc != nullptr) {
        *pending_ifunc = true;
        return uintptr_t{0};
      }
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s: IFUNC '%s' of '%s' is used before its resolver ran (the "
          "objects need each other)",
          where(obj), o.String(d.st_name), o.path));
    }
    if (d.st_shndx == SHN_ABS) return uintptr_t{d.st_value};
    if (!o.InSpan(d.st_value, 0)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: '%s' lies outside the image", where(o), o.String(d.st_name)));
    }
    return o.base + d.st_value;
  };
  if (sym.st_shndx != SHN_UNDEF) return definition(obj, index);

  const char* version = index < obj.versym.size()
                            ? NeededVersion(obj, obj.versym[index] & 0x7fff)
                            : "";
  if (auto it = scope.exposed.find(name); it != scope.exposed.end()) {
    return it->second;
  }
  for (const auto& o : scope.objects) {
    if (uint32_t i = FindDefinition(*o, name, version); i != 0) {
      return definition(*o, i);
    }
  }
  const bool weak = ELF64_ST_BIND(sym.st_info) == STB_WEAK;
  HostImport host = BindHostImport(name, version);
  // A weak import the policy refuses is absent, as weak imports may be:
  // code checks (crtstuff's __cxa_finalize) rather than call a trap.
  if (host.address != 0 && !(host.refused && weak)) return host.address;
  if (weak) return uintptr_t{0};
  return absl::NotFoundError(absl::StrFormat(
      "%s: undefined symbol '%s%s%s': no object of the compartment defines "
      "it and the host does not expose it",
      where(obj), name, version[0] ? "@" : "", version));
}

}  // namespace mpkbox::internal
