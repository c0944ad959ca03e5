#include "runtime/signal_frame.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

#include "absl/strings/str_format.h"
#include "trampolines/gate_layout.h"
#include "runtime/keys/pku.h"

extern "C" {
// libc's own sigaction: the interposed one is the host's view.
int __sigaction(int, const struct sigaction*, struct sigaction*);
}

namespace mpkbox::internal {
namespace {

constexpr uint32_t kFpXstateMagic1 = 0x46505853;
constexpr int kPkruFeature = 9;

// The software-reserved bytes of the FXSAVE area in a signal frame (the
// kernel's struct _fpx_sw_bytes), at offset 464.
struct FxSwBytes {
  uint32_t magic1;
  uint32_t extended_size;
  uint64_t xfeatures;
  uint32_t xstate_size;
  uint32_t padding[7];
};

size_t g_pkru_offset = 0;  // of PKRU in the frame's XSAVE area (CPUID 0xD.9)

uint8_t* XsaveArea(const ucontext_t* uc) {
  return reinterpret_cast<uint8_t*>(uc->uc_mcontext.fpregs);
}
uint32_t* FramePkruSlot(const ucontext_t* uc) {
  uint8_t* x = XsaveArea(uc);
  if (x == nullptr || g_pkru_offset == 0) return nullptr;
  const auto* sw = reinterpret_cast<const FxSwBytes*>(x + 464);
  if (sw->magic1 != kFpXstateMagic1 || g_pkru_offset + 4 > sw->xstate_size) {
    return nullptr;
  }
  return reinterpret_cast<uint32_t*>(x + g_pkru_offset);
}

}  // namespace

void* FrameXsave(const ucontext_t* uc, uint64_t* xfeatures) {
  uint8_t* x = XsaveArea(uc);
  if (x == nullptr) return nullptr;
  const auto* sw = reinterpret_cast<const FxSwBytes*>(x + 464);
  if (sw->magic1 != kFpXstateMagic1) return nullptr;
  *xfeatures = sw->xfeatures;
  return x;
}

namespace {

// For Init's self-test of what the kernel does with PKRU and signals.
std::atomic<uint32_t> g_probe_handler_pkru;
std::atomic<uint32_t> g_probe_frame_pkru;
std::atomic<bool> g_probe_frame_has_pkru;
void Probe(int, siginfo_t*, void* raw) {
  g_probe_handler_pkru = ReadPkru();
  uint32_t* slot = FramePkruSlot(static_cast<ucontext_t*>(raw));
  g_probe_frame_has_pkru = slot != nullptr;
  if (slot != nullptr) g_probe_frame_pkru = *slot;
}

absl::Status SelfTest() {
  struct sigaction sa {}, old{};
  sa.sa_sigaction = Probe;
  sa.sa_flags = SA_SIGINFO;
  if (__sigaction(SIGURG, &sa, &old) != 0) {
    return absl::InternalError("cannot install the signal self-test handler");
  }
  const uint32_t mine = ReadPkru();
  syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGURG);
  __sigaction(SIGURG, &old, nullptr);
  if (g_probe_handler_pkru != MPKBOX_INIT_PKRU) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "this kernel starts signal handlers with PKRU 0x%08x, not 0x%08x: "
        "init_pkru was changed (boot parameter or debugfs)",
        g_probe_handler_pkru.load(), MPKBOX_INIT_PKRU));
  }
  if (!g_probe_frame_has_pkru || g_probe_frame_pkru != mine) {
    return absl::FailedPreconditionError(
        "this kernel does not save PKRU in signal frames where mpkbox "
        "expects it (XSAVE offset from CPUID leaf 0xD)");
  }
  return absl::OkStatus();
}


}  // namespace

uint32_t FramePkru(const ucontext_t* uc) {
  uint32_t* slot = FramePkruSlot(uc);
  if (slot == nullptr) return 0;
  const uint64_t xstate_bv = *reinterpret_cast<uint64_t*>(XsaveArea(uc) + 512);
  return (xstate_bv & (1u << kPkruFeature)) ? *slot : 0;
}

void SetFramePkru(ucontext_t* uc, uint32_t pkru) {
  uint32_t* slot = FramePkruSlot(uc);
  if (slot == nullptr) return;
  *slot = pkru;
  *reinterpret_cast<uint64_t*>(XsaveArea(uc) + 512) |= 1u << kPkruFeature;
}

absl::Status LearnSignalFrameLayout() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(0xd, kPkruFeature, &eax, &ebx, &ecx, &edx) ||
      eax < 4) {
    return absl::FailedPreconditionError("CPUID reports no PKRU state");
  }
  g_pkru_offset = ebx;
  return SelfTest();
}

}  // namespace mpkbox::internal
