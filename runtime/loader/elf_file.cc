#include "runtime/loader/elf_file.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace mpkbox::internal {
namespace {

constexpr uint64_t kPage = kElfPageSize;

uint64_t PageDown(uint64_t v) { return v & ~(kPage - 1); }
uint64_t PageUp(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

}  // namespace

absl::StatusOr<std::vector<uint8_t>> ReadFileImage(absl::string_view path) {
  const std::string name(path);
  int fd = open(name.c_str(), O_RDONLY | O_CLOEXEC);
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

PageRange PagesOf(const Elf64_Phdr& ph) {
  return {PageDown(ph.p_vaddr), PageUp(ph.p_vaddr + ph.p_memsz)};
}

absl::Status CheckDisjointPages(absl::Span<const LoadSegment> segments) {
  std::vector<const LoadSegment*> by_start;
  for (const LoadSegment& s : segments) {
    if (s.pages.end > s.pages.start) by_start.push_back(&s);  // maps nothing
  }
  std::sort(by_start.begin(), by_start.end(),
            [](const LoadSegment* a, const LoadSegment* b) {
              return a->pages.start < b->pages.start;
            });
  const LoadSegment* reaching = nullptr;  // the furthest end so far
  for (const LoadSegment* s : by_start) {
    if (reaching != nullptr && s->pages.start < reaching->pages.end) {
      return absl::InvalidArgumentError(
          absl::StrFormat("segments %u and %u share a page",
                          std::min(reaching->index, s->index),
                          std::max(reaching->index, s->index)));
    }
    if (reaching == nullptr || s->pages.end > reaching->pages.end) {
      reaching = s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ElfFile> ElfFile::Read(absl::Span<const uint8_t> image,
                                      Type type) {
  Elf64_Ehdr eh;
  if (image.size() < sizeof(eh)) {
    return absl::InvalidArgumentError("not an ELF file");
  }
  memcpy(&eh, image.data(), sizeof(eh));
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64) {
    return absl::InvalidArgumentError("not an x86-64 ELF file");
  }
  if (type == Type::kSharedObject && eh.e_type != ET_DYN) {
    return absl::InvalidArgumentError("not a shared object (ET_DYN)");
  }
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff > image.size() ||
      eh.e_phnum > (image.size() - eh.e_phoff) / sizeof(Elf64_Phdr)) {
    return absl::InvalidArgumentError("program headers outside the file");
  }
  std::vector<Elf64_Phdr> phdrs(eh.e_phnum);
  memcpy(phdrs.data(), image.data() + eh.e_phoff,
         eh.e_phnum * sizeof(Elf64_Phdr));
  return ElfFile(image, eh, std::move(phdrs));
}

absl::StatusOr<LoadSegment> ElfFile::Segment(size_t index) const {
  if (index >= phdrs_.size() || phdrs_[index].p_type != PT_LOAD) {
    return absl::InvalidArgumentError(
        absl::StrFormat("program header %u is not a PT_LOAD", index));
  }
  const Elf64_Phdr& ph = phdrs_[index];
  if (ph.p_offset > image_.size() ||
      ph.p_filesz > image_.size() - ph.p_offset || ph.p_filesz > ph.p_memsz ||
      ph.p_vaddr % kPage != ph.p_offset % kPage ||
      ph.p_vaddr + ph.p_memsz < ph.p_vaddr ||
      ph.p_vaddr + ph.p_memsz > PageDown(~uint64_t{0})) {
    return absl::InvalidArgumentError(
        absl::StrFormat("segment %u is malformed or too large", index));
  }
  // The loader copies the segment's first page from its start: the bytes
  // before p_offset are mapped (and, if executable, run) too.
  const uint64_t from = PageDown(ph.p_offset);
  return LoadSegment{
      .index = index,
      .pages = PagesOf(ph),
      .file_offset = from,
      .bytes = image_.subspan(from, ph.p_offset + ph.p_filesz - from),
      .executable = (ph.p_flags & PF_X) != 0,
  };
}

}  // namespace mpkbox::internal
