#include "runtime/fault_report.h"

#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/debugging/symbolize.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/compartment_stack.h"
#include "runtime/gadget_guard.h"
#include "runtime/host_memory.h"
#include "runtime/keys/host_ranges.h"
#include "runtime/loader/import_policy.h"
#include "runtime/runtime_state.h"
#include "runtime/slot_registry.h"

namespace mpkbox::internal {
namespace {

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? absl::StrCat("SIG", abbrev)
                           : absl::StrCat("signal ", sig);
}

std::string CodeName(int sig, int code) {
  switch (sig) {
    case SIGSEGV:
      if (code == SEGV_MAPERR) return "SEGV_MAPERR: address not mapped";
      if (code == SEGV_ACCERR) return "SEGV_ACCERR: page protection";
      if (code == SEGV_PKUERR) return "SEGV_PKUERR: protection-key violation";
      if (code == SI_KERNEL) {
        return "SI_KERNEL: general protection fault (a non-canonical address "
               "or a privileged instruction; the kernel gives no address)";
      }
      break;
    case SIGBUS:
      if (code == BUS_ADRALN) return "BUS_ADRALN: misaligned address";
      if (code == BUS_ADRERR) return "BUS_ADRERR: no such physical address";
      if (code == BUS_OBJERR) return "BUS_OBJERR: object error";
      break;
    case SIGFPE:
      if (code == FPE_INTDIV) return "FPE_INTDIV: integer divide by zero";
      if (code == FPE_INTOVF) return "FPE_INTOVF: integer overflow";
      if (code == FPE_FLTDIV) return "FPE_FLTDIV: float divide by zero";
      break;
    case SIGILL:
      if (code == ILL_ILLOPN) return "ILL_ILLOPN: illegal operand";
      if (code == ILL_ILLOPC) return "ILL_ILLOPC: illegal opcode";
      break;
    case SIGTRAP:
      if (code == TRAP_BRKPT) return "TRAP_BRKPT: breakpoint";
      if (code == SI_KERNEL) return "breakpoint (int3)";
      break;
    case SIGABRT:
      return "abort()";
  }
  return absl::StrCat("si_code ", code);
}

// libseccomp's table of the x86-64 syscall names.
std::string SyscallName(long nr) {
  char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86_64,
                                                static_cast<int>(nr));
  if (name == nullptr) return absl::StrCat(nr);
  std::string out = absl::StrCat(name, " (", nr, ")");
  free(name);
  return out;
}

std::string KeyDescription(int key, uintptr_t address, bool unmapped) {
  if (key < 0) return unmapped ? "unmapped" : "not compartment memory";
  if (key == 0) return "key 0: ambient memory";
  // By address, not by key: the key cache moves keys between compartments,
  // possibly between the fault and this report.
  if (std::string owner = CompartmentOfAddress(address); !owner.empty()) {
    return key == Keys().trusted
               ? absl::StrCat("key ", key, ": compartment '", owner,
                              "', which holds no hardware key now")
               : absl::StrCat("key ", key, ": compartment '", owner, "'");
  }
  if (key == Keys().trusted) {
    // The host's stacks, data and heap are private to it (host_memory.h).
    if (HostMemoryKind kind = HostMemoryKindOf(address);
        kind != HostMemoryKind::kNone) {
      return absl::StrCat("key ", key, ": ", HostMemoryKindName(kind),
                          ", private to the host");
    }
    return absl::StrCat("key ", key,
                        ": mpkbox trusted state and the host heap");
  }
  if (key == Keys().selector) return absl::StrCat("key ", key, ": mpkbox selector pages");
  std::string owner = KeyOwner(key);
  return owner.empty() ? absl::StrCat("key ", key)
                       : absl::StrCat("key ", key, ": compartment '", owner, "'");
}

std::string Symbolized(uintptr_t ip, bool return_address,
                       const LoadedCodeNamer& loaded) {
  char name[256];
  // A return address points after the call: look up the call itself.
  const uintptr_t at = return_address ? ip - 1 : ip;
  if (loaded != nullptr) {
    if (std::string n = loaded(at); !n.empty()) {
      return absl::StrFormat("0x%x %s", ip, n);
    }
  }
  const void* lookup = reinterpret_cast<const void*>(at);
  if (absl::Symbolize(lookup, name, sizeof(name))) {
    return absl::StrFormat("0x%x %s", ip, name);
  }
  return absl::StrFormat("0x%x ?", ip);
}

}  // namespace

int PkeyOfAddress(uintptr_t addr) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 &&
        line.find(':') > line.find(' ')) {
      if (lo > addr) return -1;  // sorted: past it, so it is unmapped
      inside = addr < hi;
      continue;
    }
    if (inside && line.rfind("ProtectionKey:", 0) == 0) {
      return std::atoi(line.c_str() + 14);
    }
  }
  return -1;
}

absl::Status BuildFaultReport(const FaultInfo& info,
                              const std::string& compartment,
                              absl::Duration timeout, FaultReport* report,
                              const LoadedCodeNamer& loaded) {
  report->signal = info.signal;
  report->code = info.code;
  report->address = info.address;
  report->ip = info.ip;
  report->compartment = compartment;
  // Only a data fault has a data address worth a key (the others report
  // the instruction). The kernel names the key of a SEGV_PKUERR; any other
  // address is looked up in mpkbox's own registry (compartment windows and
  // stacks), never in /proc/self/smaps, which costs tens of microseconds.
  const bool data_fault = info.signal == SIGSEGV || info.signal == SIGBUS ||
                          info.kind == FaultKind::kHeapViolation;
  int key = !data_fault      ? -1
            : info.pkey >= 0 ? info.pkey
                             : KeyOfAddress(info.address);
  // A free of the host's stack, data or heap (no signal, so no si_pkey).
  if (data_fault && key < 0 && HostMemoryProtected() &&
      HostMemoryKindOf(info.address) != HostMemoryKind::kNone) {
    key = Keys().trusted;
  }
  report->pkey = key;
  report->key_owner =
      data_fault ? KeyDescription(key, info.address,
                                  info.signal == SIGSEGV &&
                                      info.code == SEGV_MAPERR)
                 : "";
  for (int i = 0; i < info.frames; ++i) {
    report->backtrace.push_back(Symbolized(info.ips[i], i > 0, loaded));
  }
  const std::string where =
      info.frames > 0 ? Symbolized(info.ips[0], false, loaded)
                      : absl::StrFormat("0x%x", info.ip);
  const std::string prefix = absl::StrCat("compartment '", compartment, "': ");
  std::string& what = report->what;
  switch (info.kind) {
    case FaultKind::kTimeout:
      what = timeout == absl::InfiniteDuration()
                 ? absl::StrCat("interrupted because an enclosing call ran "
                                "past its call_timeout, at ",
                                where)
                 : absl::StrCat("ran past its call_timeout of ",
                                absl::FormatDuration(timeout),
                                ", interrupted at ", where);
      return absl::DeadlineExceededError(absl::StrCat(prefix, what));
    case FaultKind::kException:
      what = info.what;
      return absl::AbortedError(absl::StrCat(prefix, what));
    case FaultKind::kGateViolation:
      what = absl::StrCat(
          "a jump into mpkbox's gate or signal entry with forged registers "
          "trapped (",
          SignalName(info.signal), " at ", where, ", PKRU ",
          absl::StrFormat("0x%08x", info.pkru), ")");
      return absl::AbortedError(absl::StrCat(prefix, what));
    case FaultKind::kSyscallDenied:
      what = absl::StrCat("syscall ", SyscallName(info.syscall), " refused (",
                          info.what, "), at ", where);
      return absl::PermissionDeniedError(absl::StrCat(prefix, what));
    case FaultKind::kGuardedInstruction: {
      const char* site = GuardedEntryAt(info.address);
      what = absl::StrFormat(
          "jumped to %s at 0x%x, a privileged instruction mpkbox guards "
          "(it would have changed PKRU), from %s",
          site != nullptr ? site : "a guarded instruction", info.address,
          where);
      return absl::AbortedError(absl::StrCat(prefix, what));
    }
    case FaultKind::kSegmentLoad:
      what = absl::StrCat(
          "changed FS or GS with a segment load (mov to %fs/%gs resets the "
          "base, and FS is the host's TLS): mpkbox restored the host's FS "
          "base and ended the call (",
          SignalName(info.signal), " at ", where, ")");
      return absl::AbortedError(absl::StrCat(prefix, what));
    case FaultKind::kHeapViolation:
      what = absl::StrFormat("%s: 0x%x (%s)", info.what, info.address,
                             report->key_owner);
      return absl::AbortedError(absl::StrCat(prefix, what));
    case FaultKind::kHostPointer:
      what = absl::StrFormat(
          "a callback returned 0x%x, which points into the %s: compartments "
          "cannot read it; return compartment memory from Allocate",
          info.address, info.what);
      return absl::InvalidArgumentError(absl::StrCat(prefix, what));
    case FaultKind::kExit:
      report->exit_status = info.code;
      what = absl::StrCat("called ", info.what, "(", info.code,
                          ") at ", where,
                          ": only the call ended; the process goes on");
      return absl::AbortedError(absl::StrCat(prefix, what));
    case FaultKind::kSignal:
    case FaultKind::kNone:
      break;
  }
  if (info.signal == SIGSEGV) {
    if (std::optional<std::string> import = RefusedImportAt(info.address)) {
      what = absl::StrCat("used ", *import, ", at ", where);
      return absl::PermissionDeniedError(absl::StrCat(prefix, what));
    }
  }
  what = absl::StrCat(SignalName(info.signal), " (",
                      CodeName(info.signal, info.code), ")");
  if (info.stack_base != 0 && info.address >= info.stack_base &&
      info.address < info.stack_base + kGuardBytes) {
    what = absl::StrCat("stack overflow: ", what, " in the guard page");
  }
  if ((info.signal == SIGSEGV || info.signal == SIGBUS) &&
      info.code != SI_KERNEL) {
    absl::StrAppend(&what, absl::StrFormat(" at address 0x%x (%s)",
                                           info.address, report->key_owner));
  }
  absl::StrAppend(&what, ", ip ", where);
  return absl::AbortedError(absl::StrCat(prefix, what));
}

}  // namespace mpkbox::internal
