// The page of a compartment's stdin, stdout and stderr (stdio.h): mapped by
// the loader in the compartment's image space, on its key, before any
// object that imports them is bound; filled with host rights.
#include <string.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstddef>

#include "absl/strings/str_format.h"
#include "runtime/compartment_libc/stdio.h"
#include "allocator/compartment_heap.h"

namespace mpkbox::internal {

absl::Status SetUpStdioPage(uintptr_t page, CompartmentHeap* heap,
                            absl::string_view compartment) {
  void* at = reinterpret_cast<void*>(page);
  if (mmap(at, kStdioPageBytes, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) {
    return absl::InternalError(absl::StrFormat(
        "compartment '%s': cannot map its stdio page at 0x%x: %s", compartment,
        page, strerror(errno)));
  }
  // On the compartment's current key before anything is written: fresh
  // mappings are key 0 (the heap remembers it for the key cache's re-tags).
  if (absl::Status s =
          heap->TagImage(page, kStdioPageBytes, PROT_READ | PROT_WRITE);
      !s.ok()) {
    return s;
  }
  auto* p = static_cast<StdioPage*>(at);
  InitFile(&p->files[0], FileKind::kStdin, 0, true, false);
  InitFile(&p->files[1], FileKind::kStdout, 1, false, true);
  InitFile(&p->files[2], FileKind::kStderr, 2, false, true);
  p->stdin_var = &p->files[0].file;
  p->stdout_var = &p->files[1].file;
  p->stderr_var = &p->files[2].file;
  return absl::OkStatus();
}

absl::Span<const std::pair<const char*, size_t>> StdioDataSymbols() {
  static const std::pair<const char*, size_t> kSymbols[] = {
      {"stdin", offsetof(StdioPage, stdin_var)},
      {"stdout", offsetof(StdioPage, stdout_var)},
      {"stderr", offsetof(StdioPage, stderr_var)},
      {"_IO_2_1_stdin_", offsetof(StdioPage, files[0])},
      {"_IO_2_1_stdout_", offsetof(StdioPage, files[1])},
      {"_IO_2_1_stderr_", offsetof(StdioPage, files[2])},
  };
  return kSymbols;
}

}  // namespace mpkbox::internal
