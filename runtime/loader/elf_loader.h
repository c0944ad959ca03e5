// Loads ELF shared objects into a compartment: mapped into the top of the
// compartment's heap window, every page tagged with its key, relocated by
// the runtime (host rights), RELRO made read-only, then constructors run
// inside the compartment. dlopen is no use here: it runs constructors with
// the caller's rights and shares one copy of each library.
//
// Thread-local storage (dynamic models: elf_tls.h) gets per-(thread,
// compartment) blocks in compartment memory; IFUNC resolvers run inside
// (elf_ifunc.h). Refused with an error naming the feature: the initial-exec
// TLS model and TLS descriptors, copy relocations, text relocations,
// DT_RELR, and any executable byte sequence that encodes WRPKRU,
// XRSTOR(S)(64) or WR{FS,GS}BASE.
#ifndef MPKBOX_RUNTIME_LOADER_ELF_LOADER_H_
#define MPKBOX_RUNTIME_LOADER_ELF_LOADER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mpkbox::internal {

class CompartmentHeap;
struct ElfObject;
struct SegmentPlan;

class ElfLoader {
 public:
  struct Target {
    std::string compartment;  // for messages
    CompartmentHeap* heap;    // images take its current key (TagImage)
    // Runs a constructor or destructor, void(int, char**, char**), inside.
    std::function<absl::Status(uintptr_t fn)> run_inside;
    // Runs an IFUNC resolver, uintptr_t(void), inside; its result.
    std::function<absl::StatusOr<uintptr_t>(uintptr_t fn)> resolve_inside;
  };

  explicit ElfLoader(Target target);
  ~ElfLoader();

  // Loads `path` and what it needs (DT_NEEDED, except glibc's libraries,
  // which stay the host's: import_policy.h).
  absl::Status Load(absl::string_view path);
  // A defined function or object of a loaded object, in load order.
  absl::StatusOr<uintptr_t> Lookup(absl::string_view symbol) const;
  // "name+0x12 (libfoo.so)" for an address in a loaded object's code, from
  // its dynamic symbols; empty otherwise.
  std::string NameOf(uintptr_t address) const;
  // Binds `symbol` in objects loaded from now on (a callback stub).
  void Expose(absl::string_view symbol, uintptr_t address);

  // The heap (and with it every image) was dropped: map the same objects at
  // the same addresses again and rerun their constructors.
  absl::Status Reload();
  // Destructors, inside, in reverse order of construction.
  void RunFinalizers();

 private:
  absl::StatusOr<ElfObject*> LoadObject(const std::string& path, int depth);
  // Checks and scans the file, then maps it and reads its dynamic tables.
  absl::Status Map(ElfObject& obj, const std::vector<uint8_t>& file);
  // Reserves the image's base: on Reload, the one it had before.
  absl::StatusOr<uintptr_t> Place(const ElfObject& obj,
                                  const SegmentPlan& plan);
  // Tells the heap which objects loaded code's _dl_find_object and
  // dl_iterate_phdr report (allocator/loaded_objects.cc).
  void PublishObjects();
  // Reserves, maps and fills the page of the compartment's stdin, stdout
  // and stderr (compartment_libc/stdio.h) before the first object, and
  // again, at the same address, on Reload; loaded code's imports of them
  // bind there.
  absl::Status MapStdio();
  // "compartment 'c': cannot load '/path'": how errors about obj start.
  std::string ErrorPrefix(const ElfObject& obj) const;

  Target target_;
  std::vector<std::unique_ptr<ElfObject>> objects_;  // in load order
  std::vector<std::string> loaded_paths_;  // what Load was asked, in order
  std::vector<uintptr_t> bases_;           // where each object went
  absl::flat_hash_map<std::string, uintptr_t> exposed_;
  // TLS module ids handed out (never reused: a thread may hold a block of
  // a failed load's module); from 0 again when Reset dropped the blocks.
  size_t tls_modules_ = 0;
  bool reloading_ = false;
  uintptr_t stdio_page_ = 0;
};

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_ELF_LOADER_H_
