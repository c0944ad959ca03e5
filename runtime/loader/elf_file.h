// Reads an ELF file image: its header and program headers, bounds-checked,
// and what each PT_LOAD puts in memory. mpkbox-scan and Compartment::Load
// both take a segment's bytes from here, so the scan covers exactly what the
// loader maps executable.
#ifndef MPKBOX_RUNTIME_LOADER_ELF_FILE_H_
#define MPKBOX_RUNTIME_LOADER_ELF_FILE_H_

#include <elf.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace mpkbox::internal {

// The pages the loader maps: MPKBOX_PAGE_SIZE, which this layer may not
// include (elf_segments.cc checks they agree).
inline constexpr uint64_t kElfPageSize = 4096;

// The whole of a regular file. Errors name the file.
absl::StatusOr<std::vector<uint8_t>> ReadFileImage(absl::string_view path);

// Whole pages, relative to the load base.
struct PageRange {
  uint64_t start;
  uint64_t end;
};

// The pages a PT_LOAD occupies: from the page holding p_vaddr to the one
// holding its last byte.
PageRange PagesOf(const Elf64_Phdr& ph);

// A checked PT_LOAD once mapped: its pages hold `bytes` from `pages.start`
// on, then zeros. The bytes start at the page holding p_offset, not at
// p_offset: the loader maps whole pages.
struct LoadSegment {
  size_t index;  // of its program header
  PageRange pages;
  uint64_t file_offset;  // of bytes[0]
  absl::Span<const uint8_t> bytes;
  bool executable;
};

// Refuses segments that share a page. The loader maps and protects each
// segment in turn, so a shared page would hold the bytes of one and the
// protections of the other: a writable segment's relocations could write
// into an executable page after the scan.
absl::Status CheckDisjointPages(absl::Span<const LoadSegment> segments);

class ElfFile {
 public:
  enum class Type { kAny, kSharedObject };

  // Checks the header (x86-64 ELF, of `type`) and that the program headers
  // lie in `image`, which must outlive the ElfFile. Error messages are for
  // the caller to prefix with the file's name.
  static absl::StatusOr<ElfFile> Read(absl::Span<const uint8_t> image,
                                      Type type = Type::kAny);

  const Elf64_Ehdr& header() const { return header_; }
  const std::vector<Elf64_Phdr>& program_headers() const { return phdrs_; }

  // Program header `index`, a PT_LOAD, checked against the file: its bytes
  // lie in it, p_filesz <= p_memsz, p_vaddr and p_offset are congruent
  // modulo the page size, and its pages do not wrap.
  absl::StatusOr<LoadSegment> Segment(size_t index) const;

 private:
  ElfFile(absl::Span<const uint8_t> image, const Elf64_Ehdr& header,
          std::vector<Elf64_Phdr> phdrs)
      : image_(image), header_(header), phdrs_(std::move(phdrs)) {}

  absl::Span<const uint8_t> image_;
  Elf64_Ehdr header_;
  std::vector<Elf64_Phdr> phdrs_;
};

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_LOADER_ELF_FILE_H_
