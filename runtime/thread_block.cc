#include "runtime/thread_block.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <vector>

#include "absl/base/call_once.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_format.h"
#include "allocator/heap_cache.h"
#include "mpkbox/runtime.h"
#include "runtime/call_timer.h"
#include "runtime/callback_table.h"
#include "runtime/compartment_libc/threads.h"
#include "runtime/gadget_guard.h"
#include "runtime/keys/pku.h"
#include "runtime/keys/seal.h"
#include "runtime/runtime_state.h"
#include "runtime/signals.h"
#include "runtime/slot_registry.h"
#include "runtime/syscall_dispatch.h"
#include "runtime/testing_switches.h"
#include "runtime/thread_identity.h"
#include "runtime/thread_runtime.h"

extern "C" {
__thread __attribute__((tls_model(MPKBOX_TLS_MODEL)))
mpkbox::internal::SelectorPage* mpkbox_tls_thread = nullptr;
}

namespace mpkbox::internal {
namespace {

// [heap cache table][SelectorPage] on the selector key, then the
// ThreadBlock on the trusted key.
constexpr size_t kBlockBytes =
    (kHeapCacheTableBytes + sizeof(SelectorPage) + sizeof(ThreadBlock) +
     MPKBOX_PAGE_SIZE - 1) &
    ~size_t{MPKBOX_PAGE_SIZE - 1};

// Blocks are sealed (mseal: their keys and mappings never change), so a
// thread that exits hands its block to the next instead of unmapping it.
absl::Mutex g_pool_lock;
std::vector<void*>* g_pool ABSL_GUARDED_BY(g_pool_lock) = nullptr;

// A block of zeroes, tagged and (where the kernel can) sealed.
absl::StatusOr<void*> AcquireBlock() {
  {
    absl::MutexLock lock(&g_pool_lock);
    if (g_pool != nullptr && !g_pool->empty()) {
      void* p = g_pool->back();
      g_pool->pop_back();
      return p;
    }
  }
  void* p = mmap(nullptr, kBlockBytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "cannot map this thread's gate state: %s", strerror(errno)));
  }
  absl::Status s = TagPages(p, kHeapCacheTableBytes + sizeof(SelectorPage),
                            PROT_READ | PROT_WRITE, Keys().selector);
  if (s.ok()) {
    s = TagPages(static_cast<char*>(p) + kHeapCacheTableBytes +
                     sizeof(SelectorPage),
                 kBlockBytes - kHeapCacheTableBytes - sizeof(SelectorPage),
                 PROT_READ | PROT_WRITE, Keys().trusted);
  }
  if (!s.ok()) {
    munmap(p, kBlockBytes);
    return s;
  }
  Seal(p, kBlockBytes);
  return p;
}

void ReleaseBlock(void* p) {
  if (!SealingAvailable()) {
    munmap(p, kBlockBytes);
    return;
  }
  // Zero pages again, same keys (allowed on sealed writable memory).
  if (madvise(p, kBlockBytes, MADV_DONTNEED) != 0) memset(p, 0, kBlockBytes);
  absl::MutexLock lock(&g_pool_lock);
  if (g_pool == nullptr) g_pool = new std::vector<void*>;
  g_pool->push_back(p);
}

// The kernel writes the thread's rseq area (TLS, key 0) on preemption; with
// key 0 read-only in a compartment that write kills the thread (docs/DESIGN.md 5).
absl::Status UnregisterRseq() {
  if (MPKBOX_SWITCHED_OFF(skip_rseq_unregistration)) {
    return absl::OkStatus();
  }
  if (__rseq_size == 0) return absl::OkStatus();  // glibc did not register
  auto* area = reinterpret_cast<struct rseq*>(
      static_cast<char*>(__builtin_thread_pointer()) + __rseq_offset);
  if (static_cast<int32_t>(area->cpu_id) < 0) return absl::OkStatus();
  // glibc 2.36 registers 32 bytes whatever __rseq_size says.
  for (unsigned len : {__rseq_size, 32u}) {
    if (syscall(SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) == 0) {
      // sched_getcpu falls back to getcpu when cpu_id is negative.
      area->cpu_id = RSEQ_CPU_ID_REGISTRATION_FAILED;
      return absl::OkStatus();
    }
  }
  return absl::FailedPreconditionError(absl::StrFormat(
      "cannot unregister this thread's rseq area: %s", strerror(errno)));
}

// Everything a thread needs once before it may enter any compartment. Later
// steps (breakpoints on stray gadgets) belong here too.
absl::Status PrepareThread(SelectorPage* sel, ThreadBlock* tb) {
  if (absl::Status s = UnregisterRseq(); !s.ok()) return s;
  if (absl::Status s = SetUpSignalStack(tb); !s.ok()) return s;
  if (absl::Status s = GuardThisThread(tb); !s.ok()) return s;
  if (absl::Status s = GiveThreadIdentity(sel, tb); !s.ok()) return s;
  return ArmSyscallDispatch(sel);
}

// fork() gives the child one thread, without Syscall User Dispatch (it is
// not inherited): arm it again before the child can enter a compartment.
void RearmAfterFork() {
  if (mpkbox_tls_thread != nullptr) {
    // Breakpoints belong to the parent's thread: the child needs its own.
    UnguardThisThread(mpkbox_tls_thread->thread_block);
    GuardThisThread(mpkbox_tls_thread->thread_block)
        .IgnoreError();  // Call checks
    ArmSyscallDispatch(mpkbox_tls_thread).IgnoreError();
  }
}

void ReleaseThisThread() {
  SelectorPage* sel = mpkbox_tls_thread;
  if (sel == nullptr) return;
  OpenAllKeysInThisThread();
  RunThreadKeyDestructorsAtExit(sel);  // inside, before the contexts go
  DisarmSyscallDispatch();  // its selector is about to be unmapped
  DeleteCallTimer(sel->thread_block);
  UnguardThisThread(sel->thread_block);
  ReleaseSignalStack(sel->thread_block);
  ReleaseThreadContexts(sel->thread_block);
  DropThreadIdentity(sel->thread_block);
  mpkbox_tls_thread = nullptr;
  ReleaseBlock(HeapCacheTable(sel));
}

struct ThreadExit {
  bool armed = false;
  ~ThreadExit() {
    if (armed) ReleaseThisThread();
  }
};
thread_local ThreadExit t_thread_exit;

}  // namespace

absl::StatusOr<ThreadBlock*> EnsureThreadBlock() {
  if (mpkbox_tls_thread != nullptr) return mpkbox_tls_thread->thread_block;
  if (absl::Status s = Runtime::Init(); !s.ok()) return s;
  OpenAllKeysInThisThread();

  absl::StatusOr<void*> block = AcquireBlock();
  if (!block.ok()) return block.status();
  void* p = *block;
  auto* sel = reinterpret_cast<SelectorPage*>(static_cast<char*>(p) +
                                              kHeapCacheTableBytes);
  static_assert(sizeof(SelectorPage) == MPKBOX_PAGE_SIZE);
  auto* tb = reinterpret_cast<ThreadBlock*>(reinterpret_cast<char*>(sel) +
                                            MPKBOX_PAGE_SIZE);
  sel->thread_block = tb;
  tb->callbacks = CallbackTable();
  tb->resume = &tb->resume_state;
  tb->resume_trusted = &tb->resume_trusted_state;
  new (tb->runtime_private) ThreadRuntime;
  static absl::once_flag fork_handler;
  absl::call_once(fork_handler,
                  [] { pthread_atfork(nullptr, nullptr, RearmAfterFork); });
  mpkbox_tls_thread = sel;  // the set-up's probe signal looks for it
  if (absl::Status s = PrepareThread(sel, tb); !s.ok()) {
    DropThreadIdentity(tb);
    mpkbox_tls_thread = nullptr;
    ReleaseSignalStack(tb);
    ReleaseBlock(p);
    return s;
  }
  t_thread_exit.armed = true;  // first use registers the destructor
  return tb;
}

}  // namespace mpkbox::internal
