#include "runtime/loader/elf_loader.h"

#include <elf.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "allocator/compartment_heap.h"
#include "mpkbox/internal/gate_layout.h"
#include "runtime/loader/code_scan.h"
#include "runtime/loader/elf_file.h"
#include "runtime/loader/import_policy.h"
#include "runtime/keys/pku.h"

namespace mpkbox::internal {

constexpr uintptr_t kPage = MPKBOX_PAGE_SIZE;

// One loaded object. Its dynamic tables are host-owned copies, taken
// before relocation and bounds-checked: the file is untrusted, and the image
// is the compartment's to rewrite once it runs.
struct ElfObject {
  std::string path;
  std::string soname;
  uintptr_t base = 0;  // load bias
  size_t span = 0;     // bytes from base
  std::vector<Elf64_Phdr> phdrs;
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
  const char* String(size_t offset) const {
    return offset < strings.size() ? strings.c_str() + offset : "";
  }
};

namespace {

uintptr_t PageDown(uintptr_t v) { return v & ~(kPage - 1); }

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

// The best definition of name@version in obj: the exact version, else the
// default one. Returns the symbol index, or 0. Every index is checked
// against the copies' sizes.
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
  const uintptr_t mark = target_.heap->ImageMark();
  absl::StatusOr<ElfObject*> obj = LoadObject(std::string(path), 0);
  if (!obj.ok()) {
    // Nothing half-loaded stays mapped or visible to Lookup, and the space
    // goes back (a Reset reloads what succeeded at the same addresses).
    objects_.resize(objects_before);
    if (!reloading_) bases_.resize(bases_before);
    target_.heap->RewindImages(mark);
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
  absl::StatusOr<std::vector<uint8_t>> file = ReadFileImage(real);
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
  if (absl::Status s = Map(obj, *file); !s.ok()) return s;
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
  absl::StatusOr<ElfFile> elf =
      ElfFile::Read(file, ElfFile::Type::kSharedObject);
  if (!elf.ok()) {
    return absl::Status(elf.status().code(),
                        absl::StrCat(Where(obj), ": ", elf.status().message()));
  }
  obj.phdrs = elf->program_headers();

  uintptr_t span = 0, align = kPage;
  const Elf64_Phdr* dynamic = nullptr;
  std::vector<LoadSegment> segments;
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
    absl::StatusOr<LoadSegment> segment = elf->Segment(i);
    if (!segment.ok() ||
        ph.p_vaddr + ph.p_memsz > CompartmentHeap::kImageBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: segment %u is malformed or too large", Where(obj), i));
    }
    span = std::max<uintptr_t>(span, segment->pages.end);
    if (ph.p_align > align && ph.p_align <= (2 << 20)) align = ph.p_align;
    if (segment->executable) {
      // Every byte copied into executable pages, aligned or not: no
      // privileged instruction may hide in them (DESIGN.md 6, item 3).
      for (const ScanFinding& f : ScanSegment(*segment)) {
        return absl::PermissionDeniedError(absl::StrFormat(
            "%s: %s at file offset 0x%x (executable segment %u): loaded code "
            "must not be able to change protection keys or the thread pointer",
            Where(obj), f.instruction, f.file_offset, i));
      }
    }
    segments.push_back(*segment);
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

  // Copies of the bytes just scanned, not a mapping of the file: a file
  // rewritten after the scan must not change the code (MAP_PRIVATE pages
  // stay shared with the page cache until written).
  for (const LoadSegment& segment : segments) {
    const uintptr_t start = obj.base + segment.pages.start;
    const uintptr_t mem_end = obj.base + segment.pages.end;
    if (mem_end == start) continue;
    if (mmap(reinterpret_cast<void*>(start), mem_end - start,
             PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
             -1, 0) == MAP_FAILED) {
      return absl::InternalError(absl::StrFormat(
          "%s: cannot map a segment: %s", Where(obj), strerror(errno)));
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
    memcpy(reinterpret_cast<void*>(start), segment.bytes.data(),
           segment.bytes.size());
  }

  // The dynamic section and the tables it points to, copied into host
  // memory. A pointer must lie in a loaded segment (gaps are PROT_NONE).
  if (obj.SegmentRoom(dynamic->p_vaddr) < dynamic->p_memsz) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(obj), ": PT_DYNAMIC lies outside the segments"));
  }
  std::vector<Elf64_Dyn> dyn(dynamic->p_memsz / sizeof(Elf64_Dyn));
  memcpy(dyn.data(), reinterpret_cast<const void*>(obj.base + dynamic->p_vaddr),
         dyn.size() * sizeof(Elf64_Dyn));
  uint64_t symtab = 0, strtab = 0, strsz = 0, gnu_hash = 0, sysv_hash = 0,
           versym = 0, verdef = 0, verneed = 0, rela = 0, relasz = 0,
           jmprel = 0, pltrelsz = 0, init_arraysz = 0, fini_arraysz = 0,
           soname = 0, syment = sizeof(Elf64_Sym);
  std::vector<uint64_t> needed;
  for (const Elf64_Dyn& d : dyn) {
    if (d.d_tag == DT_NULL) break;
    const uint64_t v = d.d_un.d_val;
    switch (d.d_tag) {
      case DT_NEEDED: needed.push_back(v); break;
      case DT_SONAME: soname = v; break;
      case DT_SYMTAB: symtab = v; break;
      case DT_SYMENT: syment = v; break;
      case DT_STRTAB: strtab = v; break;
      case DT_STRSZ: strsz = v; break;
      case DT_GNU_HASH: gnu_hash = v; break;
      case DT_HASH: sysv_hash = v; break;
      case DT_VERSYM: versym = v; break;
      case DT_VERDEF: verdef = v; break;
      case DT_VERDEFNUM: obj.verdefnum = v; break;
      case DT_VERNEED: verneed = v; break;
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
      case DT_INIT: obj.init = v; break;
      case DT_FINI: obj.fini = v; break;
      case DT_INIT_ARRAY: obj.init_array = v; break;
      case DT_INIT_ARRAYSZ: init_arraysz = v; break;
      case DT_FINI_ARRAY: obj.fini_array = v; break;
      case DT_FINI_ARRAYSZ: fini_arraysz = v; break;
      default: break;
    }
  }
  auto copy_bytes = [&obj](uint64_t vaddr, uint64_t bytes, void* out) {
    if (vaddr == 0 || obj.SegmentRoom(vaddr) < bytes) return false;
    memcpy(out, reinterpret_cast<const void*>(obj.base + vaddr), bytes);
    return true;
  };
  auto bad = [&](const char* what) {
    return absl::InvalidArgumentError(absl::StrCat(
        Where(obj), ": ", what, " is missing, malformed or outside the "
        "segments"));
  };
  // The hash table says how many symbols there are.
  if (gnu_hash != 0) {
    obj.gnu_hash = true;
    uint32_t head[4];
    if (!copy_bytes(gnu_hash, sizeof(head), head)) return bad("DT_GNU_HASH");
    const uint64_t nbuckets = head[0], symoffset = head[1];
    const uint64_t chain = 4 + 2 * uint64_t{head[2]} + nbuckets;  // words
    const uint64_t room = obj.SegmentRoom(gnu_hash) / 4;
    if (chain > room) return bad("DT_GNU_HASH");
    obj.hash.resize(chain);
    copy_bytes(gnu_hash, chain * 4, obj.hash.data());
    uint64_t last = 0;
    for (uint64_t b = 0; b < nbuckets; ++b) {
      last = std::max<uint64_t>(last, obj.hash[4 + 2 * head[2] + b]);
    }
    uint64_t nsyms = symoffset;
    if (last >= symoffset) {
      // Walk the last chain to its end, inside the table's segment.
      const auto* words = reinterpret_cast<const uint32_t*>(obj.base + gnu_hash);
      uint64_t i = last;
      for (;; ++i) {
        if (chain + (i - symoffset) >= room) return bad("DT_GNU_HASH");
        if (words[chain + (i - symoffset)] & 1) break;
      }
      nsyms = i + 1;
      obj.hash.resize(chain + (nsyms - symoffset));
      copy_bytes(gnu_hash, obj.hash.size() * 4, obj.hash.data());
    }
    if (nsyms > (uint64_t{1} << 24) ||
        obj.SegmentRoom(symtab) / sizeof(Elf64_Sym) < nsyms) {
      return bad("DT_GNU_HASH or DT_SYMTAB");
    }
    obj.syms.resize(nsyms);
  } else if (sysv_hash != 0) {
    uint32_t head[2];
    if (!copy_bytes(sysv_hash, sizeof(head), head)) return bad("DT_HASH");
    const uint64_t words = 2 + uint64_t{head[0]} + head[1];
    if (words * 4 > obj.SegmentRoom(sysv_hash) || head[1] > (1u << 24) ||
        obj.SegmentRoom(symtab) / sizeof(Elf64_Sym) < head[1]) {
      return bad("DT_HASH or DT_SYMTAB");
    }
    obj.hash.resize(words);
    copy_bytes(sysv_hash, words * 4, obj.hash.data());
    obj.syms.resize(head[1]);
  } else {
    return bad("the symbol hash table");
  }
  if (syment != sizeof(Elf64_Sym) ||
      !copy_bytes(symtab, obj.syms.size() * sizeof(Elf64_Sym),
                  obj.syms.data())) {
    return bad("DT_SYMTAB");
  }
  if (strsz > obj.SegmentRoom(strtab)) return bad("DT_STRTAB");
  obj.strings.resize(strsz);
  if (!copy_bytes(strtab, strsz, obj.strings.data())) return bad("DT_STRTAB");
  if (versym != 0) {
    obj.versym.resize(obj.syms.size());
    if (!copy_bytes(versym, obj.versym.size() * 2, obj.versym.data())) {
      return bad("DT_VERSYM");
    }
  }
  // Version records are read with bounds from these copies.
  for (auto [vaddr, out] : {std::pair{verdef, &obj.verdef},
                            std::pair{verneed, &obj.verneed}}) {
    if (vaddr == 0) continue;
    out->resize(std::min<uint64_t>(obj.SegmentRoom(vaddr), 1 << 20));
    copy_bytes(vaddr, out->size(), out->data());
  }
  for (auto [vaddr, bytes] : {std::pair{rela, relasz},
                              std::pair{jmprel, pltrelsz}}) {
    if (bytes == 0) continue;
    if (bytes > obj.SegmentRoom(vaddr)) return bad("a relocation table");
    const size_t first = obj.relocations.size();
    obj.relocations.resize(first + bytes / sizeof(Elf64_Rela));
    if (!copy_bytes(vaddr, (obj.relocations.size() - first) *
                               sizeof(Elf64_Rela),
                    obj.relocations.data() + first)) {
      return bad("a relocation table");
    }
  }
  if ((init_arraysz != 0 && obj.SegmentRoom(obj.init_array) < init_arraysz) ||
      (fini_arraysz != 0 && obj.SegmentRoom(obj.fini_array) < fini_arraysz) ||
      (obj.init != 0 && obj.SegmentRoom(obj.init) == 0) ||
      (obj.fini != 0 && obj.SegmentRoom(obj.fini) == 0)) {
    return bad("a constructor or destructor");
  }
  for (const Elf64_Sym& sym : obj.syms) {
    if (sym.st_shndx != SHN_UNDEF &&
        ELF64_ST_TYPE(sym.st_info) == STT_GNU_IFUNC) {
      return absl::UnimplementedError(absl::StrFormat(
          "%s: '%s' is an IFUNC, which mpkbox's loader does not support",
          Where(obj), obj.String(sym.st_name)));
    }
  }
  obj.init = obj.init != 0 ? obj.base + obj.init : 0;
  obj.fini = obj.fini != 0 ? obj.base + obj.fini : 0;
  obj.init_array = obj.init_array != 0 ? obj.base + obj.init_array : 0;
  obj.fini_array = obj.fini_array != 0 ? obj.base + obj.fini_array : 0;
  obj.ninit = init_arraysz / sizeof(uintptr_t);
  obj.nfini = fini_arraysz / sizeof(uintptr_t);
  for (uint64_t n : needed) obj.needed.emplace_back(obj.String(n));
  if (soname != 0) obj.soname = obj.String(soname);
  return absl::OkStatus();
}

absl::StatusOr<uintptr_t> ElfLoader::Resolve(const ElfObject& obj,
                                             uint32_t index) {
  if (index >= obj.syms.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: a relocation names symbol %u of %u", Where(obj), index,
        obj.syms.size()));
  }
  const Elf64_Sym& sym = obj.syms[index];
  const char* name = obj.String(sym.st_name);
  const int type = ELF64_ST_TYPE(sym.st_info);
  if (type == STT_TLS) {
    return absl::UnimplementedError(absl::StrFormat(
        "%s: '%s' is thread-local, which mpkbox's loader does not support",
        Where(obj), name));
  }
  auto definition = [&](const ElfObject& o,
                        uint32_t i) -> absl::StatusOr<uintptr_t> {
    const Elf64_Sym& d = o.syms[i];
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

  const char* version = index < obj.versym.size()
                            ? NeededVersion(obj, obj.versym[index] & 0x7fff)
                            : "";
  if (auto it = exposed_.find(name); it != exposed_.end()) return it->second;
  for (const auto& o : objects_) {
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
      Where(obj), name, version[0] ? "@" : "", version));
}

absl::Status ElfLoader::Relocate(ElfObject& obj) {
  {
    for (size_t i = 0; i < obj.relocations.size(); ++i) {
      const Elf64_Rela& r = obj.relocations[i];
      const uint32_t type = ELF64_R_TYPE(r.r_info);
      if (type == R_X86_64_NONE) continue;
      // Only writable segments: a relocation into code would write
      // instructions the scan never saw (text relocations are refused).
      if (obj.SegmentRoom(r.r_offset, /*writable_only=*/true) <
          sizeof(uint64_t)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: relocation %u writes outside its writable segments",
            Where(obj), i));
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
  return absl::OkStatus();
}

absl::Status ElfLoader::Protect(ElfObject& obj) {
  for (const Elf64_Phdr& ph : obj.phdrs) {
    if (ph.p_type != PT_LOAD) continue;
    // The pages Map filled with the scanned bytes.
    const uintptr_t start = obj.base + PagesOf(ph).start;
    const uintptr_t end = obj.base + PagesOf(ph).end;
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
      const Elf64_Sym& s = o->syms[i];
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

std::string ElfLoader::NameOf(uintptr_t address) const {
  for (const auto& o : objects_) {
    if (address < o->base || !o->InSpan(address - o->base, 1)) continue;
    const uint64_t offset = address - o->base;
    const Elf64_Sym* best = nullptr;
    for (const Elf64_Sym& s : o->syms) {
      if (s.st_shndx == SHN_UNDEF || ELF64_ST_TYPE(s.st_info) != STT_FUNC ||
          s.st_value > offset) {
        continue;
      }
      if (best == nullptr || s.st_value > best->st_value) best = &s;
    }
    return best != nullptr
               ? absl::StrFormat("%s+0x%x (%s)", o->String(best->st_name),
                                 offset - best->st_value, o->soname)
               : absl::StrFormat("%s+0x%x", o->soname, offset);
  }
  return "";
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
