#include "runtime/loader/elf_loader.h"

#include <elf.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "allocator/compartment_heap.h"
#include "runtime/compartment_libc/stdio.h"
#include "runtime/loader/elf_constructors.h"
#include "runtime/loader/elf_dynamic.h"
#include "runtime/loader/elf_file.h"
#include "runtime/loader/elf_ifunc.h"
#include "runtime/loader/elf_object.h"
#include "runtime/loader/elf_relocation.h"
#include "runtime/loader/elf_segments.h"
#include "runtime/loader/elf_symbols.h"
#include "runtime/loader/elf_tls.h"
#include "runtime/loader/import_policy.h"

namespace mpkbox::internal {
namespace {

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

}  // namespace

ElfLoader::ElfLoader(Target target) : target_(std::move(target)) {}
ElfLoader::~ElfLoader() = default;

std::string ElfLoader::ErrorPrefix(const ElfObject& obj) const {
  return CannotLoad(target_.compartment, obj);
}

void ElfLoader::Expose(absl::string_view symbol, uintptr_t address) {
  exposed_[std::string(symbol)] = address;
}

absl::Status ElfLoader::MapStdio() {
  absl::StatusOr<uintptr_t> page =
      target_.heap->ReserveImageSpace(kStdioPageBytes, kStdioPageBytes);
  if (!page.ok()) return page.status();
  if (stdio_page_ != 0 && *page != stdio_page_) {
    return absl::InternalError(absl::StrFormat(
        "compartment '%s': its stdio page would not go back to 0x%x after "
        "Reset",
        target_.compartment, stdio_page_));
  }
  if (absl::Status s =
          SetUpStdioPage(*page, target_.heap, target_.compartment);
      !s.ok()) {
    return s;
  }
  stdio_page_ = *page;
  for (const auto& [symbol, offset] : StdioDataSymbols()) {
    Expose(symbol, *page + offset);
  }
  return absl::OkStatus();
}

absl::Status ElfLoader::Load(absl::string_view path) {
  // Before the mark: a failed load does not take the page with it.
  if (stdio_page_ == 0) {
    if (absl::Status s = MapStdio(); !s.ok()) return s;
  }
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
    PublishObjects();
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
          ErrorPrefix(obj), name));
    }
    absl::StatusOr<ElfObject*> d = LoadObject(dep, depth + 1);
    if (!d.ok()) return d.status();
  }
  const SymbolScope scope{.compartment = target_.compartment,
                          .exposed = exposed_,
                          .objects = objects_};
  if (absl::Status s = ApplyRelocations(obj, scope); !s.ok()) return s;
  if (absl::Status s = ProtectSegments(obj, *target_.heap, ErrorPrefix(obj));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ResolveIfuncs(obj, scope, target_.resolve_inside);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ProtectRelro(obj, *target_.heap, ErrorPrefix(obj));
      !s.ok()) {
    return s;
  }
  PublishObjects();  // constructors may throw and catch
  if (absl::Status s =
          RunConstructors(obj, target_.run_inside, ErrorPrefix(obj));
      !s.ok()) {
    return s;
  }
  return &obj;
}

absl::Status ElfLoader::Map(ElfObject& obj, const std::vector<uint8_t>& file) {
  const std::string where = ErrorPrefix(obj);
  absl::StatusOr<ElfFile> elf =
      ElfFile::Read(file, ElfFile::Type::kSharedObject);
  if (!elf.ok()) {
    return absl::Status(elf.status().code(),
                        absl::StrCat(where, ": ", elf.status().message()));
  }
  obj.phdrs = elf->program_headers();
  const Elf64_Ehdr& eh = elf->header();
  for (const Elf64_Phdr& ph : obj.phdrs) {  // dl_iterate_phdr reports them
    const uint64_t bytes = uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
    if (ph.p_type == PT_LOAD && eh.e_phoff >= ph.p_offset &&
        eh.e_phoff - ph.p_offset <= ph.p_filesz &&
        bytes <= ph.p_filesz - (eh.e_phoff - ph.p_offset)) {
      obj.phdrs_vaddr = ph.p_vaddr + (eh.e_phoff - ph.p_offset);
    }
  }
  absl::StatusOr<SegmentPlan> plan = PlanSegments(*elf, where);
  if (!plan.ok()) return plan.status();
  absl::StatusOr<uintptr_t> base = Place(obj, *plan);
  if (!base.ok()) return base.status();
  obj.base = *base;
  obj.span = plan->span;
  if (absl::Status s = MapSegments(plan->loads, obj.base, *target_.heap, where);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadDynamic(obj, plan->dynamic, where); !s.ok()) {
    return s;
  }
  if (plan->tls.p_type != PT_TLS) return absl::OkStatus();
  return SetUpTls(obj, plan->tls, file, ++tls_modules_, target_.heap, where);
}

void ElfLoader::PublishObjects() {
  std::vector<LoadedObjectInfo> list;
  for (const auto& o : objects_) {
    LoadedObjectInfo info = {};
    info.base = o->base;
    info.end = o->base + o->span;
    info.start = info.end;
    for (const Elf64_Phdr& ph : o->phdrs) {
      if (ph.p_type == PT_LOAD) {
        info.start =
            std::min<uintptr_t>(info.start, o->base + PagesOf(ph).start);
      }
      if (ph.p_type == PT_GNU_EH_FRAME && o->SegmentRoom(ph.p_vaddr) != 0) {
        info.eh_frame = o->base + ph.p_vaddr;
      }
    }
    if (o->phdrs_vaddr != 0) {
      info.phdr = o->base + o->phdrs_vaddr;
      info.phnum = o->phdrs.size();
    }
    list.push_back(info);
  }
  target_.heap->SetLoadedObjects(list);
}

absl::StatusOr<uintptr_t> ElfLoader::Place(const ElfObject& obj,
                                           const SegmentPlan& plan) {
  absl::StatusOr<uintptr_t> base =
      target_.heap->ReserveImageSpace(plan.span, plan.align);
  if (!base.ok()) return base.status();
  if (reloading_) {
    const size_t index = objects_.size();
    if (index >= bases_.size() || bases_[index] != *base) {
      return absl::InternalError(absl::StrFormat(
          "%s: it would not go back to the address it had before Reset",
          ErrorPrefix(obj)));
    }
  } else {
    bases_.push_back(*base);
  }
  return base;
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
      if (auto it = o->ifuncs.find(i); it != o->ifuncs.end()) {
        return it->second;  // what its resolver chose
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
  tls_modules_ = 0;  // the heap's Reset dropped the modules and blocks
  if (stdio_page_ != 0) {
    if (absl::Status s = MapStdio(); !s.ok()) return s;
  }
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
    if (!RunDestructors(**it, target_.run_inside)) return;  // faulted
  }
}

}  // namespace mpkbox::internal
