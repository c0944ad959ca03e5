#include "mpkbox/runtime.h"

#include <sys/mman.h>

#include "absl/base/call_once.h"
#include "absl/status/status.h"
#include "runtime/callback_table.h"
#include "runtime/pku.h"
#include "runtime/runtime_state.h"

namespace mpkbox {
namespace {

internal::RuntimeKeys g_keys;

bool ProbeSupport() {
  if (!internal::CpuHasPku()) return false;
  int key = pkey_alloc(0, 0);
  if (key < 0) return false;  // e.g. a kernel without pkeys
  pkey_free(key);
  return true;
}

absl::Status InitOnce() {
  if (!Runtime::IsSupported()) {
    return absl::FailedPreconditionError(
        "mpkbox needs memory protection keys (x86 PKU with OSPKE and a "
        "working pkey_alloc); this CPU or kernel has none");
  }
  absl::StatusOr<int> trusted = internal::AllocateKey("the trusted key");
  if (!trusted.ok()) return trusted.status();
  absl::StatusOr<int> selector = internal::AllocateKey("the selector key");
  if (!selector.ok()) return selector.status();
  g_keys.trusted = *trusted;
  g_keys.selector = *selector;
  return internal::InitCallbackTable();
}

}  // namespace

bool Runtime::IsSupported() {
  static const bool supported = ProbeSupport();
  return supported;
}

absl::Status Runtime::Init(const RuntimeOptions& /*options*/) {
  static absl::once_flag once;
  static absl::Status* result;
  absl::call_once(once, [] { result = new absl::Status(InitOnce()); });
  return *result;
}

namespace internal {
const RuntimeKeys& Keys() { return g_keys; }
}  // namespace internal

}  // namespace mpkbox
