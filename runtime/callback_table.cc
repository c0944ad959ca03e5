#include "runtime/callback_table.h"

#include <sys/mman.h>

#include <vector>

#include "absl/base/optimization.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "mpkbox/callback.h"
#include "runtime/keys/host_ranges.h"
#include "runtime/keys/pku.h"
#include "runtime/runtime_state.h"
#include "trampolines/trampolines.h"


namespace mpkbox::internal {
namespace {

struct Table {
  absl::Mutex mu;
  CallbackEntry* entries = nullptr;  // trusted key
  std::vector<int> free_slots ABSL_GUARDED_BY(mu);
};

Table& GetTable() {
  static Table* table = new Table;
  return *table;
}

}  // namespace

absl::Status InitCallbackTable() {
  constexpr size_t kBytes = MPKBOX_MAX_CALLBACKS * sizeof(CallbackEntry);
  void* p = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError("cannot map the callback table");
  }
  if (absl::Status s = TagPages(p, kBytes, PROT_READ | PROT_WRITE,
                                Keys().trusted);
      !s.ok()) {
    return s;
  }
  Table& t = GetTable();
  absl::MutexLock lock(&t.mu);
  t.entries = static_cast<CallbackEntry*>(p);
  // Every compartment's malloc and free may enter the runtime's allocator.
  t.entries[MPKBOX_ALLOCATOR_CALLBACK].fn =
      reinterpret_cast<uintptr_t>(mpkbox_allocator_entry);
  t.entries[MPKBOX_ALLOCATOR_CALLBACK].domain =
      static_cast<uint64_t>(MPKBOX_ANY_DOMAIN);
  t.entries[MPKBOX_ALLOCATOR_CALLBACK].returns = MPKBOX_RETURNS_INTEGER;
  // And their libc bindings may ask for host-side work.
  t.entries[MPKBOX_LIBC_CALLBACK].fn =
      reinterpret_cast<uintptr_t>(mpkbox_libc_entry);
  t.entries[MPKBOX_LIBC_CALLBACK].domain =
      static_cast<uint64_t>(MPKBOX_ANY_DOMAIN);
  t.entries[MPKBOX_LIBC_CALLBACK].returns = MPKBOX_RETURNS_INTEGER;
  for (int i = MPKBOX_MAX_CALLBACKS - 1; i >= 0; --i) {
    if (i != MPKBOX_ALLOCATOR_CALLBACK && i != MPKBOX_LIBC_CALLBACK) {
      t.free_slots.push_back(i);
    }
  }
  return absl::OkStatus();
}

CallbackEntry* CallbackTable() { return GetTable().entries; }

absl::StatusOr<int> AddCallbackSlot(uint64_t domain, void* host_fn,
                                    int returns,
                                    absl::string_view compartment,
                                    void* target) {
  OpenAllKeysInThisThread();
  Table& t = GetTable();
  absl::MutexLock lock(&t.mu);
  if (t.free_slots.empty()) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "compartment '%s': all %d callback slots are registered", compartment,
        MPKBOX_MAX_CALLBACKS));
  }
  int slot = t.free_slots.back();
  t.free_slots.pop_back();
  t.entries[slot].fn = reinterpret_cast<uintptr_t>(host_fn);
  t.entries[slot].domain = domain;
  t.entries[slot].returns = static_cast<uint64_t>(returns);
  t.entries[slot].target = reinterpret_cast<uintptr_t>(target);
  return slot;
}

void ReleaseCallbackSlot(int slot) {
  OpenAllKeysInThisThread();
  Table& t = GetTable();
  absl::MutexLock lock(&t.mu);
  t.entries[slot] = CallbackEntry{};
  t.free_slots.push_back(slot);
}

uintptr_t RunningCallbackTarget() {
  // The gate keeps the running callback's entry in its frame (gate.S).
  ThreadBlock* tb = mpkbox_tls_thread->thread_block;
  const Frame& frame = tb->frames[tb->depth - 1];
  return reinterpret_cast<const CallbackEntry*>(frame.ret)->target;
}

void CheckCallbackResult(uintptr_t result) {
  if (result == 0) return;
  const HostMemoryKind kind = HostMemoryKindOf(result);
  if (ABSL_PREDICT_TRUE(kind == HostMemoryKind::kNone)) return;
  AbandonCallback(mpkbox_tls_thread->thread_block, FaultKind::kHostPointer,
                  result, HostMemoryKindName(kind));
}

uintptr_t CallbackStubAddress(int slot) {
  return reinterpret_cast<uintptr_t>(mpkbox_callback_stubs) +
         (static_cast<uintptr_t>(slot) << MPKBOX_CB_STUB_SHIFT);
}

}  // namespace mpkbox::internal
