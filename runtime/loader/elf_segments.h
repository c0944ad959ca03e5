// An object's PT_LOAD segments: checked and scanned before anything is
// mapped, copied into the compartment's image space on its key, and given
// their final protections and RELRO once relocated.
#ifndef MPKBOX_RUNTIME_LOADER_ELF_SEGMENTS_H_
#define MPKBOX_RUNTIME_LOADER_ELF_SEGMENTS_H_

#include <elf.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/loader/elf_file.h"
#include "runtime/loader/elf_object.h"

namespace mpkbox::internal {

class CompartmentHeap;

// What the program headers ask for.
struct SegmentPlan {
  std::vector<LoadSegment> loads;  // in program-header order, into the file
                                   // or into `rewritten`
  // Executable segments with accidental gadget bytes, rewritten
  // (code_rewrite.h): the loader's private copies.
  std::vector<std::unique_ptr<const std::vector<uint8_t>>> rewritten;
  Elf64_Phdr dynamic = {};         // PT_DYNAMIC
  Elf64_Phdr tls = {};             // PT_TLS; p_type PT_NULL if none
  uintptr_t span = 0;              // bytes from the base, whole pages
  uintptr_t align = 0;             // of the base
};

// Checks every program header of a shared object and scans its executable
// segments, rewriting accidental privileged byte sequences; refuses
// PT_INTERP, segments sharing a page, RELRO outside the image and
// privileged instructions it cannot rewrite. `where` starts every error
// message.
absl::StatusOr<SegmentPlan> PlanSegments(const ElfFile& elf,
                                         absl::string_view where);

// Maps `loads` at `base` read-write on `key` and copies their bytes in.
absl::Status MapSegments(const std::vector<LoadSegment>& loads,
                         uintptr_t base, CompartmentHeap& heap,
                         absl::string_view where);

// The protections the program headers ask for (code runs from here on:
// IFUNC resolvers, then constructors).
absl::Status ProtectSegments(const ElfObject& obj, CompartmentHeap& heap,
                             absl::string_view where);
// RELRO read-only, once every relocation is written.
absl::Status ProtectRelro(const ElfObject& obj, CompartmentHeap& heap,
                          absl::string_view where);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_ELF_SEGMENTS_H_
