// stdio for loaded code. Its FILE objects are compartment memory: stdin,
// stdout and stderr in a page the loader maps on the compartment's key
// (StdioPage), files it opens on its heap. Every function on them runs with
// compartment rights (stdio_streams.cc); only bytes for stdout and stderr
// reach the host, through the libc entry, where the host copies them from
// the compartment's own memory and hands whole lines to the sink
// (stdio_sink.cc). Nothing the host does depends on a FILE object's
// contents, so a forged one can mislead only the compartment itself.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_LIBC_STDIO_H_
#define MPKBOX_RUNTIME_COMPARTMENT_LIBC_STDIO_H_

#include <stdio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "mpkbox/compartment_options.h"

namespace mpkbox::internal {

class CompartmentHeap;

// Requests of the libc entry's stdio concern (kLibcStdio).
enum StdioRequest : uint64_t {
  kStdioWrite = 0,      // stream (1, 2) in the op's high half; (bytes, n)
  kStdioBadStream = 1,  // (the FILE*): ends the call as a fault
};

enum class FileKind : uint32_t {
  kStdin = 0,       // always at end of file
  kStdout = 1,      // the sink
  kStderr = 2,      // the sink
  kDescriptor = 3,  // read and write through the syscall wrappers
};

inline constexpr uint64_t kFileMagic = 0x454c49467862706dULL;  // "mpbxFILE"

struct CompartmentFile {
  // glibc's layout, every buffer pointer null: code built with glibc's
  // inline getc_unlocked/putc_unlocked finds no room and calls __uflow or
  // __overflow, which bind here; feof_unlocked reads _flags, kept up to date.
  FILE file;
  uint64_t magic;
  CompartmentFile* self;  // with magic: a FILE* loaded code passes is ours
  FileKind kind;
  int unget;              // a character ungetc pushed back, or -1
  unsigned char* buffer;  // read buffer (its heap), kDescriptor only
  uint32_t start, end;    // unread bytes: buffer[start, end)
};

// A fresh FILE object of `kind` on `fd` (stdio_streams.cc).
void InitFile(CompartmentFile* f, FileKind kind, int fd, bool readable,
              bool writable);

// The page stdin, stdout and stderr live in: the variables loaded code
// imports (`stdout` is a FILE*) and the objects they point to.
struct StdioPage {
  FILE* stdin_var;
  FILE* stdout_var;
  FILE* stderr_var;
  CompartmentFile files[3];
};
inline constexpr size_t kStdioPageBytes = 4096;
static_assert(sizeof(StdioPage) <= kStdioPageBytes);

// Maps the page at `page` (image space of `heap`) on its current key
// and fills it; the data symbols loaded code may import and their
// addresses in it.
absl::Status SetUpStdioPage(uintptr_t page, CompartmentHeap* heap,
                            absl::string_view compartment);
absl::Span<const std::pair<const char*, size_t>> StdioDataSymbols();

// Host side: what one compartment wrote to stdout and stderr, cut into
// lines for its sink. In LibcState.
class StdioSink {
 public:
  explicit StdioSink(const CompartmentOptions& options);
  // Of n bytes offered, how many fit the budget; the rest count as dropped.
  uint64_t Admit(uint64_t n);
  // Bytes the host copied out of the compartment for `stream`: whole lines
  // go to the sink, within the budget.
  void Write(StdioStream stream, absl::string_view bytes);
  // A partial line still held goes out (Reset, destruction).
  void Flush();
  size_t bytes() const;
  size_t dropped_bytes() const;

 private:
  void Emit(StdioStream stream, absl::string_view line);

  const CompartmentOptions& options_;
  mutable absl::Mutex mu_;
  std::string partial_[2] ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_COMPARTMENT_LIBC_STDIO_H_
