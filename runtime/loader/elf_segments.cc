#include "runtime/loader/elf_segments.h"

#include <elf.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "allocator/compartment_heap.h"
#include "trampolines/gate_layout.h"
#include "runtime/keys/pku.h"
#include "runtime/loader/code_rewrite.h"
#include "runtime/loader/code_scan.h"
#include "runtime/loader/unwind_table.h"

namespace mpkbox::internal {
namespace {

constexpr uintptr_t kPage = MPKBOX_PAGE_SIZE;
static_assert(kPage == kElfPageSize, "mpkbox-scan and Load see other pages");

uintptr_t PageDown(uintptr_t v) { return v & ~(kPage - 1); }

int Prot(const Elf64_Phdr& ph) {
  return (ph.p_flags & PF_R ? PROT_READ : 0) |
         (ph.p_flags & PF_W ? PROT_WRITE : 0) |
         (ph.p_flags & PF_X ? PROT_EXEC : 0);
}

absl::Status Prefixed(absl::string_view where, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(where, ": ", s.message()));
}

}  // namespace

absl::StatusOr<SegmentPlan> PlanSegments(const ElfFile& elf,
                                         absl::string_view where) {
  const std::vector<Elf64_Phdr>& phdrs = elf.program_headers();
  SegmentPlan plan;
  plan.align = kPage;
  bool dynamic = false;
  for (size_t i = 0; i < phdrs.size(); ++i) {
    const Elf64_Phdr& ph = phdrs[i];
    if (ph.p_type == PT_TLS) plan.tls = ph;  // elf_tls.cc checks it
    if (ph.p_type == PT_INTERP) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": it is an executable (PT_INTERP)"));
    }
    if (ph.p_type == PT_DYNAMIC) {
      plan.dynamic = ph;
      dynamic = true;
    }
    if (ph.p_type != PT_LOAD) continue;
    absl::StatusOr<LoadSegment> segment = elf.Segment(i);
    if (!segment.ok() ||
        ph.p_vaddr + ph.p_memsz > CompartmentHeap::kImageBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: segment %u is malformed or too large", where, i));
    }
    plan.span = std::max<uintptr_t>(plan.span, segment->pages.end);
    if (ph.p_align > plan.align && ph.p_align <= (2 << 20)) {
      plan.align = ph.p_align;
    }
    // Every byte copied into executable pages, aligned or not: no
    // privileged instruction may hide in them (docs/DESIGN.md 6, item 3).
    if (segment->executable && !ScanSegment(*segment).empty()) {
      SegmentRewrite rewrite = RewriteGadgets(*segment, UnwindTable(elf));
      for (const GadgetVerdict& v : rewrite.verdicts) {
        if (v.kind == GadgetVerdict::Kind::kRewritten) continue;
        return absl::PermissionDeniedError(absl::StrFormat(
            "%s: %s at file offset 0x%x (executable segment %u), bytes %s: "
            "%s: %s; loaded code must not be able to change protection keys "
            "or the thread pointer",
            where, v.instruction, v.file_offset, i, HexBytes(v.bytes),
            v.kind == GadgetVerdict::Kind::kReal ? "a real instruction"
                                                 : "cannot be rewritten",
            v.detail));
      }
      plan.rewritten.push_back(std::make_unique<const std::vector<uint8_t>>(
          std::move(rewrite.code)));
      segment->bytes = *plan.rewritten.back();
      // The rescan: what is mapped executable holds none at any offset.
      if (!ScanSegment(*segment).empty()) {
        return absl::InternalError(absl::StrFormat(
            "%s: executable segment %u still has privileged instructions "
            "after rewriting",
            where, i));
      }
    }
    plan.loads.push_back(*segment);
  }
  if (absl::Status s = CheckDisjointPages(plan.loads); !s.ok()) {
    return Prefixed(where, s);
  }
  if (plan.span == 0 || !dynamic) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": no loadable segments or no PT_DYNAMIC"));
  }
  // ProtectSegments tags RELRO's pages with the compartment's key: they
  // must be the image's, not the host's.
  for (const Elf64_Phdr& ph : phdrs) {
    if (ph.p_type == PT_GNU_RELRO &&
        (ph.p_vaddr > plan.span || ph.p_memsz > plan.span - ph.p_vaddr)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": PT_GNU_RELRO lies outside the image"));
    }
  }
  return plan;
}

absl::Status MapSegments(const std::vector<LoadSegment>& loads,
                         uintptr_t base, CompartmentHeap& heap,
                         absl::string_view where) {
  // Copies of the bytes just scanned, not a mapping of the file: a file
  // rewritten after the scan must not change the code (MAP_PRIVATE pages
  // stay shared with the page cache until written).
  for (const LoadSegment& segment : loads) {
    const uintptr_t start = base + segment.pages.start;
    const uintptr_t mem_end = base + segment.pages.end;
    if (mem_end == start) continue;
    if (mmap(reinterpret_cast<void*>(start), mem_end - start,
             PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
             -1, 0) == MAP_FAILED) {
      return absl::InternalError(absl::StrFormat(
          "%s: cannot map a segment: %s", where, strerror(errno)));
    }
    // On the compartment's key at once: fresh mappings are on key 0, which
    // other compartments may read (or, with kReadWrite, write).
    if (absl::Status s =
            heap.TagImage(start, mem_end - start, PROT_READ | PROT_WRITE);
        !s.ok()) {
      return Prefixed(where, s);
    }
    memcpy(reinterpret_cast<void*>(start), segment.bytes.data(),
           segment.bytes.size());
  }
  return absl::OkStatus();
}

absl::Status ProtectSegments(const ElfObject& obj, CompartmentHeap& heap,
                             absl::string_view where) {
  for (const Elf64_Phdr& ph : obj.phdrs) {
    if (ph.p_type != PT_LOAD) continue;
    // The pages MapSegments filled with the scanned bytes.
    const uintptr_t start = obj.base + PagesOf(ph).start;
    const uintptr_t end = obj.base + PagesOf(ph).end;
    if (absl::Status s = heap.TagImage(start, end - start, Prot(ph));
        !s.ok()) {
      return Prefixed(where, s);
    }
  }
  return absl::OkStatus();
}

absl::Status ProtectRelro(const ElfObject& obj, CompartmentHeap& heap,
                          absl::string_view where) {
  for (const Elf64_Phdr& ph : obj.phdrs) {
    if (ph.p_type != PT_GNU_RELRO) continue;
    // Whole pages only: the rest of a page stays writable, as in ld.so.
    const uintptr_t start = obj.base + PageDown(ph.p_vaddr);
    const uintptr_t end = PageDown(obj.base + ph.p_vaddr + ph.p_memsz);
    if (end > start) {
      if (absl::Status s = heap.TagImage(start, end - start, PROT_READ);
          !s.ok()) {
        return Prefixed(where, s);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace mpkbox::internal
