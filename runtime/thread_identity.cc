#include "runtime/thread_identity.h"

#include <asm/ldt.h>
#include <asm/prctl.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "runtime/keys/pku.h"
#include "runtime/keys/seal.h"
#include "runtime/testing_switches.h"

#ifndef HWCAP2_FSGSBASE
#define HWCAP2_FSGSBASE (1 << 1)
#endif

extern "C" {
// Read by the signal entry (trampolines/signal.S).
uint8_t mpkbox_fs_repair = 0;
mpkbox::internal::SelectorPage** mpkbox_thread_table = nullptr;
}

namespace mpkbox::internal {
namespace {

constexpr int kI386SetThreadArea = 243;

// int $0x80 takes 32-bit pointers: the descriptor lives below 4 GiB.
user_desc* g_desc = nullptr;
absl::Mutex g_lock;
std::vector<uint32_t>* g_free ABSL_GUARDED_BY(g_lock) = nullptr;
uint32_t g_next ABSL_GUARDED_BY(g_lock) = 1;  // 0: no identity

int SetThreadArea(user_desc* d) {
  int r;
  // From 64-bit code the kernel zeroes r8-r11 on this path.
  asm volatile("int $0x80"
               : "=a"(r)
               : "a"(kI386SetThreadArea), "b"(d)
               : "r8", "r9", "r10", "r11", "memory");
  return r;
}

void Describe(user_desc* d, uint32_t id) {
  *d = {};
  d->entry_number = MPKBOX_IDENTITY_ENTRY;
  d->limit = id;  // all lsl needs; loading it into FS only gives base 0
  d->seg_32bit = 1;
  d->read_exec_only = 1;
}

// Without IA32 emulation int $0x80 may fault: ask a child first (a fork
// that sends no SIGCHLD: the host's handler must not see it).
bool SetThreadAreaWorks() {
  const long pid = syscall(SYS_clone, 0, nullptr, nullptr, nullptr, 0);
  if (pid == 0) {
    Describe(g_desc, 1);
    syscall(SYS_exit_group, SetThreadArea(g_desc) == 0 ? 0 : 1);
  }
  if (pid < 0) return false;
  int status = 0;
  if (waitpid(static_cast<pid_t>(pid), &status, __WALL) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

void InitThreadIdentity() {
  if (MPKBOX_SWITCHED_OFF(skip_fs_repair)) return;
  if (!(getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE)) return;
  void* page = mmap(nullptr, MPKBOX_PAGE_SIZE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
  if (page == MAP_FAILED) return;
  g_desc = static_cast<user_desc*>(page);
  if (!SetThreadAreaWorks()) return;
  const size_t bytes = sizeof(SelectorPage*) * MPKBOX_MAX_THREAD_IDS;
  void* table = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (table == MAP_FAILED) return;
  if (!TagPages(table, bytes, PROT_READ | PROT_WRITE, Keys().trusted).ok()) {
    munmap(table, bytes);
    return;
  }
  Seal(table, bytes);
  mpkbox_thread_table = static_cast<SelectorPage**>(table);
  {
    absl::MutexLock lock(&g_lock);
    g_free = new std::vector<uint32_t>;
  }
  mpkbox_fs_repair = 1;
}

bool FsRepairAvailable() { return mpkbox_fs_repair != 0; }

absl::Status GiveThreadIdentity(SelectorPage* sel, ThreadBlock* tb) {
  syscall(SYS_arch_prctl, ARCH_GET_FS, &tb->host_fs_base);
  if (!FsRepairAvailable()) return absl::OkStatus();
  absl::MutexLock lock(&g_lock);
  uint32_t id = 0;
  if (!g_free->empty()) {
    id = g_free->back();
    g_free->pop_back();
  } else if (g_next < MPKBOX_MAX_THREAD_IDS) {
    id = g_next++;
  }
  Describe(g_desc, id);  // id 0: none (no room: FS cannot be repaired)
  if (SetThreadArea(g_desc) != 0) {
    if (id != 0) g_free->push_back(id);
    // The descriptor is inherited from the thread that made this one: it
    // must not stay, or this thread would be repaired as that one.
    *g_desc = {};
    g_desc->entry_number = MPKBOX_IDENTITY_ENTRY;
    g_desc->read_exec_only = 1;
    g_desc->seg_not_present = 1;
    if (SetThreadArea(g_desc) != 0) {
      return absl::InternalError(
          "cannot set or clear this thread's identity descriptor "
          "(set_thread_area)");
    }
    return absl::OkStatus();
  }
  if (id != 0) {
    mpkbox_thread_table[id] = sel;
    tb->thread_id = id;
  }
  return absl::OkStatus();
}

void DropThreadIdentity(ThreadBlock* tb) {
  if (tb->thread_id == 0) return;
  absl::MutexLock lock(&g_lock);
  mpkbox_thread_table[tb->thread_id] = nullptr;
  g_free->push_back(static_cast<uint32_t>(tb->thread_id));
  tb->thread_id = 0;
  // The descriptor stays until the thread is gone; nothing maps its id now.
}

}  // namespace mpkbox::internal
