// The process, as loaded code asks about it and leaves it.
// - exit, _exit, _Exit and quick_exit end the compartment's call, never the
//   process: a contained fault (FaultKind::kExit) whose report names the
//   function and the status. The compartment's atexit handlers do not run
//   (it faulted: it refuses calls until Reset, which discards its state).
// - sysconf answers from a list of harmless names, with host rights (some
//   read /sys); any other name fails with EINVAL.
// - getauxval answers the entries that are plain numbers about the CPU and
//   the process's page size and clock (AT_RANDOM, the canary's seed, and
//   every entry that is an address are absent: 0 with ENOENT).
#include <errno.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <cstdint>

#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/libc_entry.h"

namespace mpkbox::internal {
namespace {

enum ProcessRequest : uint64_t {
  kExit = 0,   // (status, caller's address); which function: the op's extra
  kSysconf,    // (name)
  kGetauxval,  // (type)
};

enum ExitFunction : uint32_t { kExitFn, kUnderscoreExit, kUnderscoreExitC,
                               kQuickExit };
constexpr const char* kExitNames[] = {"exit", "_exit", "_Exit", "quick_exit"};

// The host's answers that are no number.
constexpr uint64_t kAbsent = ~uint64_t{0};        // getauxval: no such entry
constexpr uint64_t kNoLimit = ~uint64_t{0} - 1;   // sysconf: -1, errno kept

// ---- compartment side -------------------------------------------------------

[[noreturn]] void Leave(ExitFunction fn, int status, void* caller) {
  EnterLibc(LibcOp(kLibcProcess, kExit, fn), static_cast<uint32_t>(status),
            reinterpret_cast<uintptr_t>(caller));
  __builtin_trap();  // the host never returns to it
}

[[noreturn]] void Exit(int status) {
  Leave(kExitFn, status, __builtin_return_address(0));
}
[[noreturn]] void UnderscoreExit(int status) {
  Leave(kUnderscoreExit, status, __builtin_return_address(0));
}
[[noreturn]] void UnderscoreExitC(int status) {
  Leave(kUnderscoreExitC, status, __builtin_return_address(0));
}
[[noreturn]] void QuickExit(int status) {
  Leave(kQuickExit, status, __builtin_return_address(0));
}

long Sysconf(int name) {
  const uint64_t r =
      EnterLibc(LibcOp(kLibcProcess, kSysconf), static_cast<uint32_t>(name));
  return r == kNoLimit ? -1 : LibcResult(r);
}

unsigned long Getauxval(unsigned long type) {
  const uint64_t r = EnterLibc(LibcOp(kLibcProcess, kGetauxval), type);
  if (r == kAbsent) {
    *mpkbox_compartment_errno_location() = ENOENT;
    return 0;
  }
  return r;
}

int Getpagesize() { return MPKBOX_PAGE_SIZE; }

constexpr char kEndsTheCall[] =
    "ends the compartment's call as a contained fault naming the status; "
    "the process goes on";

// ---- host side --------------------------------------------------------------

bool HarmlessSysconf(int name) {
  switch (name) {
    case _SC_PAGESIZE:
    case _SC_NPROCESSORS_CONF:
    case _SC_NPROCESSORS_ONLN:
    case _SC_CLK_TCK:
    case _SC_ARG_MAX:
    case _SC_CHILD_MAX:
    case _SC_OPEN_MAX:
    case _SC_STREAM_MAX:
    case _SC_IOV_MAX:
    case _SC_LINE_MAX:
    case _SC_HOST_NAME_MAX:
    case _SC_LOGIN_NAME_MAX:
    case _SC_TTY_NAME_MAX:
    case _SC_SYMLOOP_MAX:
    case _SC_GETPW_R_SIZE_MAX:
    case _SC_GETGR_R_SIZE_MAX:
    case _SC_NGROUPS_MAX:
    case _SC_RTSIG_MAX:
    case _SC_SIGQUEUE_MAX:
    case _SC_TZNAME_MAX:
    case _SC_VERSION:
    case _SC_THREADS:
    case _SC_THREAD_SAFE_FUNCTIONS:
    case _SC_THREAD_KEYS_MAX:
    case _SC_THREAD_STACK_MIN:
    case _SC_MONOTONIC_CLOCK:
    case _SC_TIMERS:
    case _SC_MINSIGSTKSZ:
    case _SC_SIGSTKSZ:
    case _SC_LEVEL1_DCACHE_LINESIZE:
    case _SC_LEVEL1_DCACHE_SIZE:
    case _SC_LEVEL2_CACHE_SIZE:
    case _SC_LEVEL3_CACHE_SIZE:
    case _SC_PHYS_PAGES:
      return true;
    default:
      return false;
  }
}

uint64_t HostSysconf(uint64_t name) {
  const int n = static_cast<int>(name);
  if (name > INT32_MAX || !HarmlessSysconf(n)) {
    return static_cast<uint64_t>(-EINVAL);
  }
  errno = 0;
  const long r = sysconf(n);
  if (r == -1) return errno != 0 ? static_cast<uint64_t>(-errno) : kNoLimit;
  return static_cast<uint64_t>(r);
}

uint64_t HostGetauxval(uint64_t type) {
  switch (type) {
    case AT_PAGESZ:
    case AT_CLKTCK:
    case AT_HWCAP:
    case AT_HWCAP2:
    case AT_SECURE:
    case AT_MINSIGSTKSZ:
      break;
    default:
      return kAbsent;
  }
  errno = 0;
  const unsigned long v = getauxval(type);
  return v == 0 && errno == ENOENT ? kAbsent : v;
}

}  // namespace

absl::Span<const LibcBinding> ProcessBindings() {
  static const LibcBinding kBindings[] = {
      {"exit", LibcFn(&Exit), kEndsTheCall},
      {"_exit", LibcFn(&UnderscoreExit), kEndsTheCall},
      {"_Exit", LibcFn(&UnderscoreExitC), kEndsTheCall},
      {"quick_exit", LibcFn(&QuickExit), kEndsTheCall},
      {"sysconf", LibcFn(&Sysconf),
       "the host answers a list of harmless names (page size, processors, "
       "limits); others fail with EINVAL"},
      {"__sysconf", LibcFn(&Sysconf),
       "the host answers a list of harmless names (page size, processors, "
       "limits); others fail with EINVAL"},
      {"getauxval", LibcFn(&Getauxval),
       "the host answers page size, clock, hardware capabilities and "
       "AT_SECURE; never AT_RANDOM or an address"},
      {"__getauxval", LibcFn(&Getauxval),
       "the host answers page size, clock, hardware capabilities and "
       "AT_SECURE; never AT_RANDOM or an address"},
      {"getpagesize", LibcFn(&Getpagesize), "a constant"},
  };
  return kBindings;
}

uint64_t LibcProcessRequest(const LibcCaller& caller, uint64_t op,
                            const uint64_t a[5]) {
  switch (op & 0xff) {
    case kExit: {
      const uint32_t fn = static_cast<uint32_t>(op >> 32);
      FaultInfo& f = RecordFault(
          caller.tb, FaultKind::kExit,
          {.code = static_cast<int32_t>(static_cast<uint32_t>(a[0])),
           .ip = a[1],
           .what = fn < std::size(kExitNames) ? kExitNames[fn] : "exit"});
      // The caller's address is the compartment's word, only symbolized.
      f.frames = 1;
      f.ips[0] = a[1];
      AbandonRecordedCallback(caller.tb);
    }
    case kSysconf:
      return HostSysconf(a[0]);
    case kGetauxval:
      return HostGetauxval(a[0]);
    default:
      AbandonCallback(caller.tb, FaultKind::kSyscallDenied, op,
                      "an unknown process request");
  }
}

}  // namespace mpkbox::internal
