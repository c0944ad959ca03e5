#include "runtime/loader/elf_loader.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "allocator/address_zone.h"
#include "allocator/compartment_heap.h"
#include "mpkbox/internal/gate_layout.h"
#include "runtime/loader/code_scan.h"
#include "runtime/loader/import_policy.h"
#include "runtime/pku.h"

namespace mpkbox::internal {

constexpr uintptr_t kPage = MPKBOX_PAGE_SIZE;

// One loaded object. Pointers into its dynamic tables point into its
// mapping; every index and offset taken from the file is checked first.
struct ElfObject {
  std::string path;
  std::string soname;
  uintptr_t base = 0;  // load bias
  size_t span = 0;     // bytes from base
  std::vector<Elf64_Phdr> phdrs;
  const Elf64_Sym* symtab = nullptr;
  size_t nsyms = 0;
  const char* strtab = nullptr;
  size_t strsz = 0;
  const uint32_t* gnu_hash = nullptr;
  const uint32_t* sysv_hash = nullptr;
  const uint16_t* versym = nullptr;
  uintptr_t verdef = 0, verneed = 0;
  size_t verdefnum = 0, verneednum = 0;
  const Elf64_Rela* rela = nullptr;
  size_t nrela = 0;
  const Elf64_Rela* jmprel = nullptr;
  size_t njmprel = 0;
  uintptr_t init = 0, fini = 0;
  uintptr_t init_array = 0, fini_array = 0;
  size_t ninit = 0, nfini = 0;
  std::vector<std::string> needed;
  bool relocated = false;
  bool constructed = false;

  bool InSpan(uintptr_t vaddr, size_t bytes) const {
    return vaddr <= span && bytes <= span - vaddr;
  }
  const char* String(size_t offset) const {
    return offset < strsz ? strtab + offset : "";
  }
};

namespace {

uintptr_t PageDown(uintptr_t v) { return v & ~(kPage - 1); }
uintptr_t PageUp(uintptr_t v) { return (v + kPage - 1) & ~(kPage - 1); }

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

int Prot(const Elf64_Phdr& ph) {
  return (ph.p_flags & PF_R ? PROT_READ : 0) |
         (ph.p_flags & PF_W ? PROT_WRITE : 0) |
         (ph.p_flags & PF_X ? PROT_EXEC : 0);
}

absl::StatusOr<std::vector<uint8_t>> ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrFormat("cannot open '%s': %s", path, strerror(errno)));
  }
  absl::Cleanup closer = [fd] { close(fd); };
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("'%s' is not a regular file", path));
  }
  std::vector<uint8_t> bytes(st.st_size);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = read(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      return absl::DataLossError(
          absl::StrFormat("cannot read '%s': %s", path, strerror(errno)));
    }
    done += n;
  }
  return bytes;
}

std::string FindLibrary(const std::string& name, const std::string& from) {
  if (name.find('/') != std::string::npos) return name;
  std::vector<std::string> dirs;
  if (size_t slash = from.rfind('/'); slash != std::string::npos) {
    dirs.push_back(from.substr(0, slash));
  }
  for (const char* d : {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                        "/lib", "/usr/lib"}) {
    dirs.push_back(d);
  }
  for (const std::string& d : dirs) {
    std::string candidate = absl::StrCat(d, "/", name);
    if (access(candidate.c_str(), R_OK) == 0) return candidate;
  }
  return "";
}

// Version name of verneed/verdef index `index`, or "".
const char* NeededVersion(const ElfObject& obj, uint16_t index) {
  uintptr_t at = obj.verneed;
  for (size_t i = 0; at != 0 && i < obj.verneednum; ++i) {
    if (!obj.InSpan(at - obj.base, sizeof(Elf64_Verneed))) return "";
    const auto* vn = reinterpret_cast<const Elf64_Verneed*>(at);
    uintptr_t aux_at = at + vn->vn_aux;
    for (size_t j = 0; j < vn->vn_cnt; ++j) {
      if (!obj.InSpan(aux_at - obj.base, sizeof(Elf64_Vernaux))) return "";
      const auto* aux = reinterpret_cast<const Elf64_Vernaux*>(aux_at);
      if (aux->vna_other == index) return obj.String(aux->vna_name);
      if (aux->vna_next == 0) break;
      aux_at += aux->vna_next;
    }
    if (vn->vn_next == 0) break;
    at += vn->vn_next;
  }
  return "";
}

const char* DefinedVersion(const ElfObject& obj, uint16_t index) {
  uintptr_t at = obj.verdef;
  for (size_t i = 0; at != 0 && i < obj.verdefnum; ++i) {
    if (!obj.InSpan(at - obj.base, sizeof(Elf64_Verdef))) return "";
    const auto* vd = reinterpret_cast<const Elf64_Verdef*>(at);
    if (vd->vd_ndx == index &&
        obj.InSpan(at + vd->vd_aux - obj.base, sizeof(Elf64_Verdaux))) {
      const auto* aux =
          reinterpret_cast<const Elf64_Verdaux*>(at + vd->vd_aux);
      return obj.String(aux->vda_name);
    }
    if (vd->vd_next == 0) break;
    at += vd->vd_next;
  }
  return "";
}

// The best definition of name@version in obj: the exact version, else the
// default one. Returns the symbol index, or 0.
uint32_t FindDefinition(const ElfObject& obj, const char* name,
                        const char* version) {
  uint32_t best = 0;
  int best_rank = 0;
  auto consider = [&](uint32_t i) {
    if (i >= obj.nsyms) return;
    const Elf64_Sym& s = obj.symtab[i];
    if (s.st_shndx == SHN_UNDEF || strcmp(obj.String(s.st_name), name) != 0) {
      return;
    }
    const int bind = ELF64_ST_BIND(s.st_info);
    if (bind != STB_GLOBAL && bind != STB_WEAK) return;
    int rank = 1;
    if (obj.versym != nullptr) {
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
  if (obj.gnu_hash != nullptr) {
    const uint32_t* gh = obj.gnu_hash;
    const uint32_t nbuckets = gh[0], symoffset = gh[1], bloom_size = gh[2];
    if (nbuckets == 0) return 0;
    const uint32_t* buckets = gh + 4 + 2 * bloom_size;
    const uint32_t* chain = buckets + nbuckets;
    const uint32_t h = GnuHash(name);
    for (uint32_t i = buckets[h % nbuckets]; i >= symoffset && i < obj.nsyms;
         ++i) {
      const uint32_t c = chain[i - symoffset];
      if ((c | 1) == (h | 1)) consider(i);
      if (c & 1) break;
    }
  } else if (obj.sysv_hash != nullptr) {
    const uint32_t nbucket = obj.sysv_hash[0];
    if (nbucket == 0) return 0;
    const uint32_t* bucket = obj.sysv_hash + 2;
    const uint32_t* chain = bucket + nbucket;
    size_t guard = 0;
    for (uint32_t i = bucket[SysvHash(name) % nbucket];
         i != 0 && i < obj.nsyms && guard++ < obj.nsyms; i = chain[i]) {
      consider(i);
    }
  }
  return best;
}

// Symbols in a GNU hash table: past the last chain's end.
size_t GnuSymbolCount(const uint32_t* gh) {
  const uint32_t nbuckets = gh[0], symoffset = gh[1], bloom_size = gh[2];
  const uint32_t* buckets = gh + 4 + 2 * bloom_size;
  const uint32_t* chain = buckets + nbuckets;
  uint32_t last = 0;
  for (uint32_t b = 0; b < nbuckets; ++b) last = std::max(last, buckets[b]);
  if (last < symoffset) return symoffset;
  while (!(chain[last - symoffset] & 1)) ++last;
  return last + 1;
}

}  // namespace

ElfLoader::ElfLoader(Target target) : target_(std::move(target)) {}
ElfLoader::~ElfLoader() = default;

std::string ElfLoader::Where(const ElfObject& obj) const {
  return absl::StrFormat("compartment '%s': cannot load '%s'",
                         target_.compartment, obj.path);
}

void ElfLoader::Expose(absl::string_view symbol, uintptr_t address) {
  exposed_[std::string(symbol)] = address;
}

absl::Status ElfLoader::Load(absl::string_view path) {
  const size_t objects_before = objects_.size();
  const size_t bases_before = bases_.size();
  absl::StatusOr<ElfObject*> obj = LoadObject(std::string(path), 0);
  if (!obj.ok()) {
    // Nothing half-loaded stays mapped or visible to Lookup.
    for (size_t i = objects_before; i < objects_.size(); ++i) {
      ReleaseZoneRange(objects_[i]->base, objects_[i]->span);
    }
    objects_.resize(objects_before);
    if (!reloading_) bases_.resize(bases_before);
    return obj.status();
  }
  if (!reloading_) loaded_paths_.emplace_back(path);
  return absl::OkStatus();
}

absl::StatusOr<ElfObject*> ElfLoader::LoadObject(const std::string& path,
                                                 int depth) {
  if (depth > 32) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "compartment '%s': dependencies nest deeper than 32 at '%s'",
        target_.compartment, path));
  }
  // A bare name is searched for as dlopen would (system directories).
  const std::string found =
      path.find('/') == std::string::npos ? FindLibrary(path, "") : path;
  char resolved[PATH_MAX];
  const std::string real = realpath(found.empty() ? path.c_str() : found.c_str(),
                                    resolved) != nullptr
                               ? resolved
                               : path;
  for (const auto& o : objects_) {
    if (o->path == real) return o.get();
  }
  absl::StatusOr<std::vector<uint8_t>> file = ReadFile(real);
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrFormat("compartment '%s': %s",
                                        target_.compartment,
                                        file.status().message()));
  }
  auto owned = std::make_unique<ElfObject>();
  ElfObject& obj = *owned;
  obj.path = real;
  obj.soname = real.substr(real.rfind('/') + 1);
  if (absl::Status s = Map(obj, *file); !s.ok()) {
    if (obj.span != 0) ReleaseZoneRange(obj.base, obj.span);
    return s;
  }
  objects_.push_back(std::move(owned));

  for (const std::string& name : obj.needed) {
    if (IsHostLibrary(name)) continue;
    bool have = false;
    for (const auto& o : objects_) have |= o->soname == name;
    if (have) continue;
    const std::string dep = FindLibrary(name, obj.path);
    if (dep.empty()) {
      return absl::NotFoundError(absl::StrFormat(
          "%s: it needs '%s', which is not in its directory or the system's "
          "library directories",
          Where(obj), name));
    }
    absl::StatusOr<ElfObject*> d = LoadObject(dep, depth + 1);
    if (!d.ok()) return d.status();
  }
  if (absl::Status s = Relocate(obj); !s.ok()) return s;
  if (absl::Status s = Protect(obj); !s.ok()) return s;
  if (absl::Status s = Construct(obj); !s.ok()) return s;
  return &obj;
}

absl::Status ElfLoader::Map(ElfObject& obj, const std::vector<uint8_t>& file) {
  Elf64_Ehdr eh;
  if (file.size() < sizeof(eh)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(obj), ": not an ELF file"));
  }
  memcpy(&eh, file.data(), sizeof(eh));
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(obj), ": not an x86-64 ELF file"));
  }
  if (eh.e_type != ET_DYN) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(obj), ": not a shared object (ET_DYN)"));
  }
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff > file.size() ||
      eh.e_phnum > (file.size() - eh.e_phoff) / sizeof(Elf64_Phdr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(obj), ": program headers outside the file"));
  }
  obj.phdrs.resize(eh.e_phnum);
  memcpy(obj.phdrs.data(), file.data() + eh.e_phoff,
         eh.e_phnum * sizeof(Elf64_Phdr));

  uintptr_t span = 0, align = kPage;
  const Elf64_Phdr* dynamic = nullptr;
  for (size_t i = 0; i < obj.phdrs.size(); ++i) {
    const Elf64_Phdr& ph = obj.phdrs[i];
    if (ph.p_type == PT_TLS) {
      return absl::UnimplementedError(absl::StrCat(
          Where(obj), ": it has thread-local storage (PT_TLS), which mpkbox's "
                      "loader does not support"));
    }
    if (ph.p_type == PT_INTERP) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(obj), ": it is an executable (PT_INTERP)"));
    }
    if (ph.p_type == PT_DYNAMIC) dynamic = &ph;
    if (ph.p_type != PT_LOAD) continue;
    if (ph.p_offset > file.size() || ph.p_filesz > file.size() - ph.p_offset ||
        ph.p_filesz > ph.p_memsz || ph.p_vaddr % kPage != ph.p_offset % kPage ||
        ph.p_vaddr + ph.p_memsz < ph.p_vaddr ||
        ph.p_vaddr + ph.p_memsz > CompartmentHeap::kImageBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: segment %u is malformed or too large", Where(obj), i));
    }
    span = std::max<uintptr_t>(span, PageUp(ph.p_vaddr + ph.p_memsz));
    if (ph.p_align > align && ph.p_align <= (2 << 20)) align = ph.p_align;
    if (ph.p_flags & PF_X) {
      // Bytes the CPU could execute, aligned or not: no privileged
      // instruction may hide in them (DESIGN.md 6, item 3).
      for (const PrivilegedInstruction& p : FindPrivilegedInstructions(
               absl::MakeConstSpan(file.data() + ph.p_offset, ph.p_filesz))) {
        return absl::PermissionDeniedError(absl::StrFormat(
            "%s: %s at file offset 0x%x (executable segment %u): loaded code "
            "must not be able to change protection keys or the thread pointer",
            Where(obj), p.name, ph.p_offset + p.offset, i));
      }
    }
  }
  if (span == 0 || dynamic == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(obj), ": no loadable segments or no PT_DYNAMIC"));
  }
  absl::StatusOr<uintptr_t> base =
      target_.heap->ReserveImageSpace(span, align);
  if (!base.ok()) return base.status();
  if (reloading_) {
    const size_t index = objects_.size();
    if (index >= bases_.size() || bases_[index] != *base) {
      return absl::InternalError(absl::StrFormat(
          "%s: it would not go back to the address it had before Reset",
          Where(obj)));
    }
  } else {
    bases_.push_back(*base);
  }
  obj.base = *base;
  obj.span = span;

  int fd = open(obj.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrFormat("%s: %s", Where(obj),
                                               strerror(errno)));
  }
  absl::Cleanup closer = [fd] { close(fd); };
  for (const Elf64_Phdr& ph : obj.phdrs) {
    if (ph.p_type != PT_LOAD) continue;
    const uintptr_t start = obj.base + PageDown(ph.p_vaddr);
    const uintptr_t file_end = obj.base + ph.p_vaddr + ph.p_filesz;
    const uintptr_t mem_end = PageUp(obj.base + ph.p_vaddr + ph.p_memsz);
    // Writable until relocated; the final rights and key come in Protect.
    if (ph.p_filesz > 0 &&
        mmap(reinterpret_cast<void*>(start), PageUp(file_end) - start,
             PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
             PageDown(ph.p_offset)) == MAP_FAILED) {
      return absl::InternalError(absl::StrFormat(
          "%s: mmap of a segment failed: %s", Where(obj), strerror(errno)));
    }
    if (ph.p_memsz > ph.p_filesz) {  // .bss
      const uintptr_t zero_from = ph.p_filesz > 0 ? file_end : start;
      if (PageUp(zero_from) > zero_from && ph.p_filesz > 0) {
        memset(reinterpret_cast<void*>(zero_from), 0,
               PageUp(zero_from) - zero_from);
      }
      const uintptr_t anon = PageUp(zero_from);
      if (mem_end > anon &&
          mmap(reinterpret_cast<void*>(anon), mem_end - anon,
               PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
               0) == MAP_FAILED) {
        return absl::InternalError(absl::StrFormat(
            "%s: cannot map .bss: %s", Where(obj), strerror(errno)));
      }
    }
    // On the compartment's key at once: fresh mappings are on key 0, which
    // other compartments may read (or, with kReadWrite, write).
    if (absl::Status s = TagPages(reinterpret_cast<void*>(start),
                                  mem_end - start, PROT_READ | PROT_WRITE,
                                  target_.key);
        !s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat(Where(obj), ": ", s.message()));
    }
  }

  // The dynamic section, read from the mapping.
  if (!obj.InSpan(dynamic->p_vaddr, dynamic->p_memsz)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(obj), ": PT_DYNAMIC lies outside the image"));
  }
  const auto* dyn = reinterpret_cast<const Elf64_Dyn*>(obj.base +
                                                       dynamic->p_vaddr);
  const size_t ndyn = dynamic->p_memsz / sizeof(Elf64_Dyn);
  uintptr_t rela = 0, relasz = 0, jmprel = 0, pltrelsz = 0, init_arraysz = 0,
            fini_arraysz = 0, soname = 0, syment = sizeof(Elf64_Sym);
  std::vector<uint64_t> needed;
  auto addr = [&obj](uint64_t vaddr) { return obj.base + vaddr; };
  for (size_t i = 0; i < ndyn && dyn[i].d_tag != DT_NULL; ++i) {
    const uint64_t v = dyn[i].d_un.d_val;
    switch (dyn[i].d_tag) {
      case DT_NEEDED: needed.push_back(v); break;
      case DT_SONAME: soname = v; break;
      case DT_SYMTAB: obj.symtab = reinterpret_cast<const Elf64_Sym*>(addr(v)); break;
      case DT_SYMENT: syment = v; break;
      case DT_STRTAB: obj.strtab = reinterpret_cast<const char*>(addr(v)); break;
      case DT_STRSZ: obj.strsz = v; break;
      case DT_GNU_HASH: obj.gnu_hash = reinterpret_cast<const uint32_t*>(addr(v)); break;
      case DT_HASH: obj.sysv_hash = reinterpret_cast<const uint32_t*>(addr(v)); break;
      case DT_VERSYM: obj.versym = reinterpret_cast<const uint16_t*>(addr(v)); break;
      case DT_VERDEF: obj.verdef = addr(v); break;
      case DT_VERDEFNUM: obj.verdefnum = v; break;
      case DT_VERNEED: obj.verneed = addr(v); break;
      case DT_VERNEEDNUM: obj.verneednum = v; break;
      case DT_RELA: rela = v; break;
      case DT_RELASZ: relasz = v; break;
      case DT_JMPREL: jmprel = v; break;
      case DT_PLTRELSZ: pltrelsz = v; break;
      case DT_PLTREL:
        if (v != DT_RELA) {
          return absl::UnimplementedError(
              absl::StrCat(Where(obj), ": PLT relocations are not RELA"));
        }
        break;
      case DT_REL:
        return absl::UnimplementedError(
            absl::StrCat(Where(obj), ": REL relocations (only RELA)"));
      case DT_RELR:
        return absl::UnimplementedError(
            absl::StrCat(Where(obj), ": DT_RELR relocations"));
      case DT_TEXTREL:
        return absl::UnimplementedError(
            absl::StrCat(Where(obj), ": text relocations (DT_TEXTREL)"));
      case DT_FLAGS:
        if (v & DF_TEXTREL) {
          return absl::UnimplementedError(
              absl::StrCat(Where(obj), ": text relocations (DF_TEXTREL)"));
        }
        if (v & DF_STATIC_TLS) {
          return absl::UnimplementedError(absl::StrCat(
              Where(obj), ": static thread-local storage (DF_STATIC_TLS)"));
        }
        break;
      case DT_INIT: obj.init = addr(v); break;
      case DT_FINI: obj.fini = addr(v); break;
      case DT_INIT_ARRAY: obj.init_array = v; break;
      case DT_INIT_ARRAYSZ: init_arraysz = v; break;
      case DT_FINI_ARRAY: obj.fini_array = v; break;
      case DT_FINI_ARRAYSZ: fini_arraysz = v; break;
      default: break;
    }
  }
  auto inside = [&obj](const void* p, size_t bytes) {
    return p != nullptr &&
           obj.InSpan(reinterpret_cast<uintptr_t>(p) - obj.base, bytes);
  };
  if (!inside(obj.symtab, 1) || !inside(obj.strtab, obj.strsz) ||
      syment != sizeof(Elf64_Sym) ||
      (obj.gnu_hash == nullptr && obj.sysv_hash == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(
        Where(obj), ": its dynamic symbol table is missing or malformed"));
  }
  if (obj.gnu_hash != nullptr) {
    if (!inside(obj.gnu_hash, 16) ||
        !inside(obj.gnu_hash, 16 + 8 * size_t{obj.gnu_hash[2]} +
                                  4 * size_t{obj.gnu_hash[0]})) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(obj), ": malformed DT_GNU_HASH"));
    }
    obj.nsyms = GnuSymbolCount(obj.gnu_hash);
  } else {
    if (!inside(obj.sysv_hash, 8)) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(obj), ": malformed DT_HASH"));
    }
    obj.nsyms = obj.sysv_hash[1];
  }
  if (!inside(obj.symtab, obj.nsyms * sizeof(Elf64_Sym)) ||
      (obj.versym != nullptr && !inside(obj.versym, obj.nsyms * 2))) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(obj), ": symbol table outside the image"));
  }
  if ((relasz != 0 && !obj.InSpan(rela, relasz)) ||
      (pltrelsz != 0 && !obj.InSpan(jmprel, pltrelsz)) ||
      (init_arraysz != 0 && !obj.InSpan(obj.init_array, init_arraysz)) ||
      (fini_arraysz != 0 && !obj.InSpan(obj.fini_array, fini_arraysz)) ||
      (obj.init != 0 && !obj.InSpan(obj.init - obj.base, 1)) ||
      (obj.fini != 0 && !obj.InSpan(obj.fini - obj.base, 1))) {
    return absl::InvalidArgumentError(absl::StrCat(
        Where(obj), ": relocations or constructors outside the image"));
  }
  obj.rela = reinterpret_cast<const Elf64_Rela*>(addr(rela));
  obj.nrela = relasz / sizeof(Elf64_Rela);
  obj.jmprel = reinterpret_cast<const Elf64_Rela*>(addr(jmprel));
  obj.njmprel = pltrelsz / sizeof(Elf64_Rela);
  obj.init_array = obj.init_array != 0 ? addr(obj.init_array) : 0;
  obj.fini_array = obj.fini_array != 0 ? addr(obj.fini_array) : 0;
  obj.ninit = init_arraysz / sizeof(uintptr_t);
  obj.nfini = fini_arraysz / sizeof(uintptr_t);
  for (uint64_t n : needed) obj.needed.emplace_back(obj.String(n));
  if (soname != 0) obj.soname = obj.String(soname);
  return absl::OkStatus();
}

absl::StatusOr<uintptr_t> ElfLoader::Resolve(const ElfObject& obj,
                                             uint32_t index) {
  if (index >= obj.nsyms) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: a relocation names symbol %u of %u", Where(obj), index,
        obj.nsyms));
  }
  const Elf64_Sym& sym = obj.symtab[index];
  const char* name = obj.String(sym.st_name);
  const int type = ELF64_ST_TYPE(sym.st_info);
  if (type == STT_TLS) {
    return absl::UnimplementedError(absl::StrFormat(
        "%s: '%s' is thread-local, which mpkbox's loader does not support",
        Where(obj), name));
  }
  auto definition = [&](const ElfObject& o,
                        uint32_t i) -> absl::StatusOr<uintptr_t> {
    const Elf64_Sym& d = o.symtab[i];
    if (ELF64_ST_TYPE(d.st_info) == STT_GNU_IFUNC) {
      return absl::UnimplementedError(absl::StrFormat(
          "%s: '%s' is an IFUNC, which mpkbox's loader does not support",
          Where(o), o.String(d.st_name)));
    }
    if (d.st_shndx == SHN_ABS) return uintptr_t{d.st_value};
    if (!o.InSpan(d.st_value, 0)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: '%s' lies outside the image", Where(o), o.String(d.st_name)));
    }
    return o.base + d.st_value;
  };
  if (sym.st_shndx != SHN_UNDEF) return definition(obj, index);

  const char* version =
      obj.versym != nullptr ? NeededVersion(obj, obj.versym[index] & 0x7fff)
                            : "";
  if (auto it = exposed_.find(name); it != exposed_.end()) return it->second;
  for (const auto& o : objects_) {
    if (uint32_t i = FindDefinition(*o, name, version); i != 0) {
      return definition(*o, i);
    }
  }
  HostImport host = BindHostImport(name, version);
  if (host.address != 0) return host.address;
  if (ELF64_ST_BIND(sym.st_info) == STB_WEAK) return uintptr_t{0};
  return absl::NotFoundError(absl::StrFormat(
      "%s: undefined symbol '%s%s%s': no object of the compartment defines "
      "it and the host does not expose it",
      Where(obj), name, version[0] ? "@" : "", version));
}

absl::Status ElfLoader::Relocate(ElfObject& obj) {
  for (const auto& [table, count] :
       {std::pair{obj.rela, obj.nrela}, std::pair{obj.jmprel, obj.njmprel}}) {
    for (size_t i = 0; i < count; ++i) {
      const Elf64_Rela& r = table[i];
      const uint32_t type = ELF64_R_TYPE(r.r_info);
      if (type == R_X86_64_NONE) continue;
      if (!obj.InSpan(r.r_offset, sizeof(uint64_t))) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: relocation %u writes outside the image", Where(obj), i));
      }
      auto* where = reinterpret_cast<uint64_t*>(obj.base + r.r_offset);
      switch (type) {
        case R_X86_64_RELATIVE:
          *where = obj.base + r.r_addend;
          break;
        case R_X86_64_64:
        case R_X86_64_GLOB_DAT:
        case R_X86_64_JUMP_SLOT: {
          absl::StatusOr<uintptr_t> s = Resolve(obj, ELF64_R_SYM(r.r_info));
          if (!s.ok()) return s.status();
          *where = *s + (type == R_X86_64_64 ? r.r_addend : 0);
          break;
        }
        case R_X86_64_IRELATIVE:
          return absl::UnimplementedError(absl::StrCat(
              Where(obj), ": it has IFUNC relocations (R_X86_64_IRELATIVE), "
                          "which mpkbox's loader does not support"));
        case R_X86_64_DTPMOD64:
        case R_X86_64_DTPOFF64:
        case R_X86_64_TPOFF64:
        case R_X86_64_TLSDESC:
          return absl::UnimplementedError(absl::StrCat(
              Where(obj), ": it uses thread-local storage, which mpkbox's "
                          "loader does not support"));
        case R_X86_64_COPY:
          return absl::UnimplementedError(
              absl::StrCat(Where(obj), ": copy relocations"));
        default:
          return absl::UnimplementedError(absl::StrFormat(
              "%s: relocation type %u is not supported", Where(obj), type));
      }
    }
  }
  obj.relocated = true;
  return absl::OkStatus();
}

absl::Status ElfLoader::Protect(ElfObject& obj) {
  for (const Elf64_Phdr& ph : obj.phdrs) {
    if (ph.p_type != PT_LOAD) continue;
    const uintptr_t start = obj.base + PageDown(ph.p_vaddr);
    const uintptr_t end = PageUp(obj.base + ph.p_vaddr + ph.p_memsz);
    if (absl::Status s = TagPages(reinterpret_cast<void*>(start), end - start,
                                  Prot(ph), target_.key);
        !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(Where(obj), ": ", s.message()));
    }
  }
  for (const Elf64_Phdr& ph : obj.phdrs) {
    if (ph.p_type != PT_GNU_RELRO) continue;
    // Whole pages only: the rest of a page stays writable, as in ld.so.
    const uintptr_t start = obj.base + PageDown(ph.p_vaddr);
    const uintptr_t end = PageDown(obj.base + ph.p_vaddr + ph.p_memsz);
    if (end > start) {
      if (absl::Status s = TagPages(reinterpret_cast<void*>(start),
                                    end - start, PROT_READ, target_.key);
          !s.ok()) {
        return absl::Status(s.code(),
                            absl::StrCat(Where(obj), ": ", s.message()));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ElfLoader::Construct(ElfObject& obj) {
  std::vector<uintptr_t> ctors;
  if (obj.init != 0) ctors.push_back(obj.init);
  for (size_t i = 0; i < obj.ninit; ++i) {
    const uintptr_t f = reinterpret_cast<const uintptr_t*>(obj.init_array)[i];
    if (f != 0 && f != ~uintptr_t{0}) ctors.push_back(f);
  }
  for (uintptr_t f : ctors) {
    if (!obj.InSpan(f - obj.base, 1)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: a constructor lies outside the image", Where(obj)));
    }
    if (absl::Status s = target_.run_inside(f); !s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat(Where(obj), ": its constructor failed: ",
                                 s.message()));
    }
  }
  obj.constructed = true;
  return absl::OkStatus();
}

absl::StatusOr<uintptr_t> ElfLoader::Lookup(absl::string_view symbol) const {
  const std::string name(symbol);
  for (const auto& o : objects_) {
    if (uint32_t i = FindDefinition(*o, name.c_str(), ""); i != 0) {
      const Elf64_Sym& s = o->symtab[i];
      const int type = ELF64_ST_TYPE(s.st_info);
      if ((type == STT_FUNC || type == STT_OBJECT) &&
          o->InSpan(s.st_value, 0)) {
        return o->base + s.st_value;
      }
    }
  }
  return absl::NotFoundError(absl::StrFormat(
      "compartment '%s': no loaded object defines '%s'", target_.compartment,
      symbol));
}

absl::Status ElfLoader::Reload() {
  objects_.clear();
  if (loaded_paths_.empty()) return absl::OkStatus();
  reloading_ = true;
  absl::Cleanup done = [this] { reloading_ = false; };
  for (const std::string& path : loaded_paths_) {
    if (absl::Status s = Load(path); !s.ok()) return s;
  }
  return absl::OkStatus();
}

void ElfLoader::RunFinalizers() {
  for (auto it = objects_.rbegin(); it != objects_.rend(); ++it) {
    ElfObject& obj = **it;
    if (!obj.constructed) continue;
    obj.constructed = false;
    for (size_t i = obj.nfini; i > 0; --i) {
      const uintptr_t f =
          reinterpret_cast<const uintptr_t*>(obj.fini_array)[i - 1];
      if (f == 0 || f == ~uintptr_t{0} || !obj.InSpan(f - obj.base, 1)) {
        continue;
      }
      if (!target_.run_inside(f).ok()) return;  // faulted: stop there
    }
    if (obj.fini != 0 && !target_.run_inside(obj.fini).ok()) return;
  }
}

}  // namespace mpkbox::internal
