#include "runtime/gadget_guard.h"

#include <dlfcn.h>
#include <errno.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "runtime/eager_binding.h"
#include "runtime/loader/code_scan.h"
#include "runtime/signals.h"
#include "runtime/testing_switches.h"
#include "runtime/thread_runtime.h"


extern "C" {
uint64_t mpkbox_guard_epoch = 0;
}

namespace mpkbox::internal {
namespace {

struct Entry {
  uintptr_t address;
  char what[96];  // "WRPKRU in libc.so.6+0x109352"
};

// Read by the signal handler without a lock: entries are only appended,
// and `count` is published after the entry is written.
struct Guards {
  std::atomic<bool> enabled{false};
  std::atomic<int> count{0};
  Entry entries[kMaxGuardedEntries];
  absl::Mutex mu;  // scans
  std::string error ABSL_GUARDED_BY(mu);  // too many entry points
};
Guards& GetGuards() {
  static Guards* g = new Guards;
  return *g;
}

bool IsPrefix(uint8_t b) {
  // REX and the prefixes that do not make WRPKRU or XRSTOR undefined: a
  // jump to any of them still runs the instruction.
  return (b & 0xf0) == 0x40 || b == 0x26 || b == 0x2e || b == 0x36 ||
         b == 0x3e || b == 0x64 || b == 0x65 || b == 0x67;
}

struct Found {
  uintptr_t address;
  std::string what;
};

// Every entry point of every privileged instruction in readable executable
// mappings, outside mpkbox's trampolines.
std::vector<Found> ScanMappings(std::vector<std::string>* unreadable) {
  std::vector<Found> found;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream in(line);
    std::string range, perms, offset, dev, inode, path;
    in >> range >> perms >> offset >> dev >> inode;
    std::getline(in >> std::ws, path);
    if (perms.size() < 3 || perms[2] != 'x') continue;
    if (path == "[vsyscall]") continue;  // emulated, never executed
    const size_t dash = range.find('-');
    const uintptr_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
    const uintptr_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (perms[0] != 'r') {
      unreadable->push_back(line);
      continue;
    }
    const auto* bytes = reinterpret_cast<const uint8_t*>(lo);
    const std::string name =
        path.empty() ? absl::StrFormat("[anonymous %x]", lo)
                     : path.substr(path.rfind('/') + 1);
    const uintptr_t file_base = lo - std::stoull(offset, nullptr, 16);
    for (const PrivilegedInstruction& p :
         FindPrivilegedInstructions(absl::MakeConstSpan(bytes, hi - lo))) {
      const uintptr_t at = lo + p.offset;
      if (InTrampolines(at)) continue;
      const std::string what = absl::StrFormat("%s in %s+0x%x", p.name, name,
                                               at - file_base);
      // The instruction's first byte, and every prefix byte before it.
      found.push_back({at, what});
      for (uintptr_t q = at; q > lo && at - q < 14 && IsPrefix(bytes[q - 1 - lo]);
           --q) {
        found.push_back({q - 1, what + " (through a prefix byte)"});
      }
    }
  }
  return found;
}

}  // namespace

absl::Status ScanProcessForGadgets() {
  Guards& g = GetGuards();
  absl::MutexLock lock(&g.mu);
  std::vector<std::string> unreadable;
  std::vector<Found> found = ScanMappings(&unreadable);
  std::vector<Found> fresh;
  for (const Found& f : found) {
    bool known = false;
    for (int i = 0; i < g.count.load(); ++i) {
      known |= g.entries[i].address == f.address;
    }
    if (!known) fresh.push_back(f);
  }
  g.enabled.store(true);
  if (!unreadable.empty()) {
    g.error = absl::StrCat(
        "executable mappings that cannot be read for privileged "
        "instructions: ",
        absl::StrJoin(unreadable, "; "));
  } else if (g.count.load() + static_cast<int>(fresh.size()) >
             kMaxGuardedEntries) {
    std::vector<std::string> all;
    for (int i = 0; i < g.count.load(); ++i) all.push_back(g.entries[i].what);
    for (const Found& f : fresh) all.push_back(f.what);
    g.error = absl::StrFormat(
        "%d entry points of WRPKRU/XRSTOR outside mpkbox's gates, but only "
        "%d hardware breakpoints per thread to guard them (strict mode): %s",
        all.size(), kMaxGuardedEntries, absl::StrJoin(all, ", "));
  }
  if (!g.error.empty()) {
    // Every thread's next Call takes the slow path, which refuses.
    __atomic_add_fetch(&mpkbox_guard_epoch, 1, __ATOMIC_RELEASE);
    return absl::FailedPreconditionError(g.error);
  }
  for (const Found& f : fresh) {
    Entry& e = g.entries[g.count.load()];
    e.address = f.address;
    snprintf(e.what, sizeof(e.what), "%s", f.what.c_str());
    g.count.fetch_add(1, std::memory_order_release);
  }
  if (!fresh.empty() || mpkbox_guard_epoch == 0) {
    __atomic_add_fetch(&mpkbox_guard_epoch, 1, __ATOMIC_RELEASE);
  }
  return absl::OkStatus();
}

bool GadgetGuardsEnabled() { return GetGuards().enabled.load(); }

absl::Status GadgetGuardStatus() {
  Guards& g = GetGuards();
  absl::MutexLock lock(&g.mu);
  return g.error.empty() ? absl::OkStatus()
                         : absl::FailedPreconditionError(g.error);
}

absl::Status GuardThisThread(ThreadBlock* tb) {
  Guards& g = GetGuards();
  const uint64_t epoch = __atomic_load_n(&mpkbox_guard_epoch, __ATOMIC_ACQUIRE);
  if (!g.enabled.load()) {
    tb->guard_epoch = epoch;
    return absl::OkStatus();
  }
  ThreadRuntime& rt = ThreadRuntimeOf(tb);
  const int count = g.count.load(std::memory_order_acquire);
  for (int i = rt.guard_count; i < count; ++i) {
    perf_event_attr attr{};
    attr.type = PERF_TYPE_BREAKPOINT;
    attr.size = sizeof(attr);
    attr.bp_type = HW_BREAKPOINT_X;
    attr.bp_addr = g.entries[i].address;
    attr.bp_len = sizeof(long);
    attr.sample_period = 1;
    attr.sigtrap = 1;  // SIGTRAP (TRAP_PERF) to this thread, before it runs
    attr.remove_on_exec = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    attr.sig_data = g.entries[i].address;
    const int fd = static_cast<int>(syscall(SYS_perf_event_open, &attr, 0, -1,
                                            -1, PERF_FLAG_FD_CLOEXEC));
    if (fd < 0) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "cannot guard %s with a hardware breakpoint: perf_event_open: %s "
          "(strict mode needs it; see kernel.perf_event_paranoid)",
          g.entries[i].what, strerror(errno)));
    }
    rt.guard_fds[rt.guard_count++] = fd;
  }
  tb->guard_epoch = epoch;
  return absl::OkStatus();
}

void UnguardThisThread(ThreadBlock* tb) {
  ThreadRuntime& rt = ThreadRuntimeOf(tb);
  for (int i = 0; i < rt.guard_count; ++i) close(rt.guard_fds[i]);
  rt.guard_count = 0;
  tb->guard_epoch = 0;
}

#ifdef MPKBOX_TESTING_SWITCHES
void DisableGadgetGuardsForTesting() {
  GetGuards().enabled.store(false);
  if (ThreadBlock* tb = CurrentThreadBlock()) {
    UnguardThisThread(tb);
    tb->guard_epoch = __atomic_load_n(&mpkbox_guard_epoch, __ATOMIC_ACQUIRE);
  }
}
#endif

bool ThreadGuardsCurrent(const ThreadBlock* tb) {
  return tb->guard_epoch == __atomic_load_n(&mpkbox_guard_epoch,
                                            __ATOMIC_ACQUIRE);
}

const char* GuardedEntryAt(uintptr_t address) {
  Guards& g = GetGuards();
  const int count = g.count.load(std::memory_order_acquire);
  for (int i = 0; i < count; ++i) {
    if (g.entries[i].address == address) return g.entries[i].what;
  }
  return nullptr;
}

}  // namespace mpkbox::internal
