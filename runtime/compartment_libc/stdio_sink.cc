// The host side of loaded code's stdout and stderr: the libc entry's stdio
// requests (kLibcStdio) and the sink. With host rights on the host stack;
// every argument is the compartment's: the bytes are checked to lie in its
// own memory and copied before anything looks at them, the stream must be
// stdout or stderr, and the budget is the host's count, not the caller's.
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/compartment_libc/libc_entry.h"
#include "runtime/compartment_libc/libc_state.h"
#include "runtime/compartment_libc/stdio.h"
#include "runtime/syscall_dispatch.h"
#include "runtime/testing_switches.h"

namespace mpkbox::internal {
namespace {

constexpr size_t kMaxLine = 4096;

// The default sink: the host's stderr, one write per line so lines of
// several compartments do not mix; nothing the compartment wrote can drive
// the host's terminal (control characters are escaped).
void WriteToHostStderr(absl::string_view name, StdioStream stream,
                       absl::string_view line) {
  std::string out =
      absl::StrCat("[", name, stream == StdioStream::kStdout ? "] " : "]! ");
  for (unsigned char c : line) {
    if (c == '\t' || (c >= 0x20 && c < 0x7f) || c >= 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    }
  }
  out.push_back('\n');
  for (size_t done = 0; done < out.size();) {
    const ssize_t n =
        write(STDERR_FILENO, out.data() + done, out.size() - done);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// Ends the compartment's call: reported as a refused write(2), which is what
// output to stdout and stderr stands for.
[[noreturn]] void Refuse(const LibcCaller& caller, uint64_t address,
                         const char* why) {
  char what[160];  // copied by RecordFault; nothing here needs destroying
  snprintf(what, sizeof(what), "%s: 0x%lx", why,
           static_cast<unsigned long>(address));
  RecordFault(caller.tb, FaultKind::kSyscallDenied,
              {.address = address, .syscall = SYS_write, .what = what});
  AbandonRecordedCallback(caller.tb);
}

}  // namespace

StdioSink::StdioSink(const CompartmentOptions& options) : options_(options) {}

void StdioSink::Emit(StdioStream stream, absl::string_view line) {
  if (options_.stdio_sink) {
    options_.stdio_sink(stream, line);
  } else {
    WriteToHostStderr(options_.name, stream, line);
  }
}

uint64_t StdioSink::Admit(uint64_t n) {
  absl::MutexLock lock(&mu_);
  const uint64_t room = options_.stdio_budget_bytes -
                        std::min(bytes_, options_.stdio_budget_bytes);
  if (n <= room) return n;
  dropped_ += n - room;
  return room;
}

void StdioSink::Write(StdioStream stream, absl::string_view bytes) {
  std::vector<std::pair<StdioStream, std::string>> lines;
  {
    absl::MutexLock lock(&mu_);
    // Another thread may have used the room Admit saw.
    const size_t room = options_.stdio_budget_bytes -
                        std::min(bytes_, options_.stdio_budget_bytes);
    if (bytes.size() > room) {
      dropped_ += bytes.size() - room;
      bytes = bytes.substr(0, room);
    }
    bytes_ += bytes.size();
    std::string& partial = partial_[static_cast<int>(stream) - 1];
    while (!bytes.empty()) {
      const size_t nl = bytes.find('\n');
      const size_t take =
          std::min(nl == absl::string_view::npos ? bytes.size() : nl,
                   kMaxLine - partial.size());
      partial.append(bytes.data(), take);
      bytes.remove_prefix(take);
      const bool newline = !bytes.empty() && bytes.front() == '\n';
      if (newline) bytes.remove_prefix(1);
      if (newline || partial.size() == kMaxLine) {
        lines.emplace_back(stream, std::exchange(partial, std::string()));
      }
    }
  }
  // Outside the lock: the sink is the host's code and may take its time.
  for (const auto& [s, line] : lines) Emit(s, line);
}

void StdioSink::Flush() {
  std::vector<std::pair<StdioStream, std::string>> lines;
  {
    absl::MutexLock lock(&mu_);
    for (int i = 0; i < 2; ++i) {
      if (partial_[i].empty()) continue;
      lines.emplace_back(static_cast<StdioStream>(i + 1),
                         std::exchange(partial_[i], std::string()));
    }
  }
  for (const auto& [s, line] : lines) Emit(s, line);
}

size_t StdioSink::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

size_t StdioSink::dropped_bytes() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

uint64_t LibcStdioRequest(const LibcCaller& caller, uint64_t op,
                          const uint64_t a[5]) {
  switch (op & 0xff) {
    case kStdioWrite: {
      const uint32_t stream = static_cast<uint32_t>(op >> 32);
      if (stream != 1 && stream != 2) {
        Refuse(caller, a[0],
               "stdio output to a stream other than stdout and stderr (a "
               "forged FILE object?)");
      }
      if (!InOwnMemory(*caller.ctx, a[0], a[1]) &&
          !MPKBOX_SWITCHED_OFF(skip_stdio_memory_check)) {
        Refuse(caller, a[0],
               "stdio output from memory that is not the compartment's own");
      }
      // Past the budget nothing is copied: a huge length costs the host
      // no more than the budget's worth of copying.
      const uint64_t take = caller.state->stdio.Admit(a[1]);
      // Copied in pieces, each once: another thread of the compartment
      // cannot change what the sink sees after it was checked.
      char copy[kMaxLine];
      for (uint64_t done = 0; done < take;) {
        const size_t n = std::min<uint64_t>(take - done, sizeof(copy));
        memcpy(copy, reinterpret_cast<const char*>(a[0] + done), n);
        caller.state->stdio.Write(static_cast<StdioStream>(stream),
                                  absl::string_view(copy, n));
        done += n;
      }
      return a[1];
    }
    case kStdioBadStream:
      Refuse(caller, a[0],
             "a stdio function was given a FILE* that is not a stream of "
             "this compartment");
    default:
      Refuse(caller, op, "an unknown stdio request");
  }
}

}  // namespace mpkbox::internal
