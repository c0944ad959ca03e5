#include "mpkbox/runtime.h"

#include <cpuid.h>
#include <locale.h>
#include <sys/mman.h>
#include <sys/utsname.h>

#include <cstdio>
#include <atomic>
#include <cstring>

#include "absl/base/call_once.h"
#include "absl/status/status.h"
#include "allocator/host_heap.h"
#include "runtime/callback_table.h"
#include "runtime/eager_binding.h"
#include "runtime/gadget_guard.h"
#include "runtime/host_memory.h"
#include "runtime/keys/pku.h"
#include "runtime/keys/seal.h"
#include "runtime/runtime_state.h"
#include "runtime/thread_identity.h"
#include "runtime/testing_switches.h"
#include "runtime/signals.h"
#include "absl/strings/str_format.h"
#include "trampolines/trampolines.h"

// How much vector state the gate clears (trampolines/pkru.inc,
// CLEAR_VECTOR_STATE): 0 SSE only, 1 AVX, 2 AVX-512.
extern "C" {
MpkboxAmbientGlobals mpkbox_ambient = {};
}

namespace mpkbox {
namespace {


bool ProbeSupport() {
  if (!internal::CpuHasPku()) return false;
  int key = pkey_alloc(0, 0);
  if (key < 0) return false;  // e.g. a kernel without pkeys
  pkey_free(key);
  return true;
}

bool IsAmd() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return false;
  char vendor[13];
  memcpy(vendor, &ebx, 4);
  memcpy(vendor + 4, &edx, 4);
  memcpy(vendor + 8, &ecx, 4);
  vendor[12] = 0;
  return strcmp(vendor, "AuthenticAMD") == 0;
}

absl::Status CheckKernel() {
  utsname u;
  if (uname(&u) != 0) return absl::OkStatus();
  if (internal::KernelMishandlesPkru(u.release, IsAmd())) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "kernel %s on AMD restores PKRU 0 on sigreturn (fixed in 6.12.5); "
        "strict mode refuses it (RuntimeOptions::strict)",
        u.release));
  }
  return absl::OkStatus();
}

absl::Status InitOnce(const RuntimeOptions& options) {
  if (!Runtime::IsSupported()) {
    return absl::FailedPreconditionError(
        "mpkbox needs memory protection keys (x86 PKU with OSPKE and a "
        "working pkey_alloc); this CPU or kernel has none");
  }
  // The host heap has carried the trusted key since the process's first
  // malloc (allocator/host_heap.h).
  absl::StatusOr<int> trusted = internal::HostHeapTrustedKey();
  if (!trusted.ok()) return trusted.status();
  absl::StatusOr<int> selector = internal::AllocateKey("the selector key");
  if (!selector.ok()) return selector.status();
  if (options.strict) {
    if (absl::Status s = CheckKernel(); !s.ok()) return s;
  }
  internal::SetKeys({.trusted = *trusted, .selector = *selector});
  // The gates' code never changes: sealed (where the kernel has mseal).
  if (!MPKBOX_SWITCHED_OFF(skip_sealing)) internal::EnableSealing();
  internal::Seal(mpkbox_gate_begin, mpkbox_gate_end - mpkbox_gate_begin);
  internal::Seal(mpkbox_signal_begin,
                 mpkbox_signal_end - mpkbox_signal_begin);
  __builtin_cpu_init();
  mpkbox_ambient.vector_level = __builtin_cpu_supports("avx512f") ? 2
                        : __builtin_cpu_supports("avx")   ? 1
                                                          : 0;
  // "C" with no base is libc's static C locale: nothing is allocated.
  mpkbox_ambient.c_locale = newlocale(LC_ALL_MASK, "C", nullptr);
  if (absl::Status s = internal::InitCallbackTable(); !s.ok()) return s;
  internal::InitThreadIdentity();
  if (absl::Status s = internal::InstallSignalHandling(options); !s.ok()) {
    return s;
  }
  // Compartment code must never meet ld.so's lazy binding.
  internal::BindLoadedObjectsNow();
  if (absl::Status s =
          internal::ProtectHostMemory(!options.host_memory_readable);
      !s.ok()) {
    return s;
  }
  // Stray WRPKRU/XRSTOR elsewhere in the process become traps (host code
  // emulated through the handlers just installed) or get breakpoints.
  return options.strict ? internal::ScanProcessForGadgets() : absl::OkStatus();
}

}  // namespace

bool Runtime::IsSupported() {
  static const bool supported = ProbeSupport();
  return supported && !MPKBOX_SWITCHED_OFF(pretend_no_pku);
}

absl::Status Runtime::Init(const RuntimeOptions& options) {
  static absl::once_flag once;
  static absl::Status* result;
  absl::call_once(once,
                  [&options] { result = new absl::Status(InitOnce(options)); });
  return *result;
}

namespace internal {

// Before ae6012d72fa6 (6.12.5), a WRPKRU(0) on AMD marked PKRU as "init" and
// sigreturn then loaded PKRU 0: every key open (docs/DESIGN.md 5b).
bool KernelMishandlesPkru(const char* release, bool amd) {
  int major = 0, minor = 0, patch = 0;
  if (sscanf(release, "%d.%d.%d", &major, &minor, &patch) < 2) return amd;
  const bool old = major < 6 || (major == 6 && minor < 12) ||
                   (major == 6 && minor == 12 && patch < 5);
  return old && amd;
}

}  // namespace internal

}  // namespace mpkbox
