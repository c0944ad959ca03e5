#include "runtime/eager_binding.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mpkbox::internal {
namespace {

struct Dynamic {
  ElfW(Addr) base = 0;
  const ElfW(Rela)* jmprel = nullptr;
  size_t njmprel = 0;
  const ElfW(Sym)* symtab = nullptr;
  const char* strtab = nullptr;
  const ElfW(Half)* versym = nullptr;
  const ElfW(Verneed)* verneed = nullptr;
  bool bind_now = false;
};

// ld.so rewrites some d_ptr values to addresses (DT_SYMTAB, DT_STRTAB,
// DT_JMPREL, DT_VERSYM) and leaves others as offsets (DT_VERNEED), or all
// of them on read-only dynamic sections: an offset is below the base.
uintptr_t Address(ElfW(Addr) base, ElfW(Addr) ptr) {
  return ptr < base ? base + ptr : ptr;
}

Dynamic ReadDynamic(const dl_phdr_info* info) {
  Dynamic d;
  d.base = info->dlpi_addr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type != PT_DYNAMIC) continue;
    const auto* dyn =
        reinterpret_cast<const ElfW(Dyn)*>(d.base + info->dlpi_phdr[i].p_vaddr);
    size_t pltrelsz = 0;
    for (; dyn->d_tag != DT_NULL; ++dyn) {
      switch (dyn->d_tag) {
        case DT_JMPREL: d.jmprel = reinterpret_cast<const ElfW(Rela)*>(Address(d.base, dyn->d_un.d_ptr)); break;
        case DT_PLTRELSZ: pltrelsz = dyn->d_un.d_val; break;
        case DT_SYMTAB: d.symtab = reinterpret_cast<const ElfW(Sym)*>(Address(d.base, dyn->d_un.d_ptr)); break;
        case DT_STRTAB: d.strtab = reinterpret_cast<const char*>(Address(d.base, dyn->d_un.d_ptr)); break;
        case DT_VERSYM: d.versym = reinterpret_cast<const ElfW(Half)*>(Address(d.base, dyn->d_un.d_ptr)); break;
        case DT_VERNEED: d.verneed = reinterpret_cast<const ElfW(Verneed)*>(Address(d.base, dyn->d_un.d_ptr)); break;
        case DT_FLAGS: d.bind_now |= (dyn->d_un.d_val & DF_BIND_NOW) != 0; break;
        case DT_FLAGS_1: d.bind_now |= (dyn->d_un.d_val & DF_1_NOW) != 0; break;
        default: break;
      }
    }
    d.njmprel = pltrelsz / sizeof(ElfW(Rela));
  }
  return d;
}

const char* VersionOf(const Dynamic& d, uint32_t sym) {
  if (d.versym == nullptr || d.verneed == nullptr) return nullptr;
  const ElfW(Half) index = d.versym[sym] & 0x7fff;
  if (index < 2) return nullptr;  // local or global: unversioned
  const auto* vn = d.verneed;
  for (;;) {
    const auto* aux = reinterpret_cast<const ElfW(Vernaux)*>(
        reinterpret_cast<const char*>(vn) + vn->vn_aux);
    for (unsigned i = 0; i < vn->vn_cnt; ++i) {
      if (aux->vna_other == index) return d.strtab + aux->vna_name;
      aux = reinterpret_cast<const ElfW(Vernaux)*>(
          reinterpret_cast<const char*>(aux) + aux->vna_next);
    }
    if (vn->vn_next == 0) return nullptr;
    vn = reinterpret_cast<const ElfW(Verneed)*>(
        reinterpret_cast<const char*>(vn) + vn->vn_next);
  }
}

// ld.so lets an unversioned definition satisfy a versioned reference:
// the executable's malloc serves libstdc++'s malloc@GLIBC_2.2.5. dlvsym
// does not, so the executable's own definitions are taken first.
bool InExecutable(const void* p) {
  Dl_info info;
  link_map* map = nullptr;
  return dladdr1(p, &info, reinterpret_cast<void**>(&map),
                 RTLD_DL_LINKMAP) != 0 &&
         map != nullptr && map->l_name != nullptr && map->l_name[0] == '\0';
}

void* Lookup(void* own_scope, const char* name, const char* version) {
  if (void* first = dlsym(RTLD_DEFAULT, name);
      first != nullptr && (version == nullptr || InExecutable(first))) {
    return first;
  }
  void* p = version != nullptr ? dlvsym(RTLD_DEFAULT, name, version) : nullptr;
  if (p == nullptr && own_scope != nullptr) {
    p = version != nullptr ? dlvsym(own_scope, name, version)
                           : dlsym(own_scope, name);
  }
  return p;
}

struct Lazy {
  std::string name;
  Dynamic dynamic;
};


// Runs under ld.so's lock: only collects (dlopen and dlsym take it too).
int Collect(dl_phdr_info* info, size_t, void* out) {
  const Dynamic d = ReadDynamic(info);
  if (d.bind_now || d.jmprel == nullptr || d.symtab == nullptr ||
      d.strtab == nullptr || info->dlpi_name == nullptr ||
      info->dlpi_name[0] == '\0') {
    return 0;  // the executable (bound at start) or nothing lazy
  }
  static_cast<std::vector<Lazy>*>(out)->push_back({info->dlpi_name, d});
  return 0;
}

void BindObject(const Lazy& lazy) {
  const Dynamic& d = lazy.dynamic;
  // The object's own scope, for what the global scope lacks (RTLD_LOCAL).
  void* own = dlopen(lazy.name.c_str(), RTLD_LAZY | RTLD_NOLOAD);
  for (size_t i = 0; i < d.njmprel; ++i) {
    const ElfW(Rela)& r = d.jmprel[i];
    if (ELF64_R_TYPE(r.r_info) != R_X86_64_JUMP_SLOT) continue;
    const uint32_t sym = ELF64_R_SYM(r.r_info);
    const ElfW(Sym)& s = d.symtab[sym];
    void* target = Lookup(own, d.strtab + s.st_name, VersionOf(d, sym));
    if (target != nullptr) {
      *reinterpret_cast<void**>(d.base + r.r_offset) = target;
    }
  }
  if (own != nullptr) dlclose(own);
}

}  // namespace

void BindLoadedObjectsNow() {
  std::vector<Lazy> lazy;
  dl_iterate_phdr(Collect, &lazy);
  for (const Lazy& l : lazy) BindObject(l);
}

}  // namespace mpkbox::internal
