// Per-thread state of the signal machinery, kept in the trusted ThreadBlock
// (ThreadBlock::runtime_private) so no compartment can read or change it.
#ifndef MPKBOX_RUNTIME_THREAD_RUNTIME_H_
#define MPKBOX_RUNTIME_THREAD_RUNTIME_H_

#include <setjmp.h>
#include <signal.h>
#include <time.h>

#include <cstddef>
#include <cstdint>
#include <new>

#include "trampolines/thread_block.h"

namespace mpkbox::internal {

struct ThreadRuntime {
  // The trusted signal stack (sigaltstack) of this thread, and the one the
  // host asked for (what sigaltstack reports to it).
  void* signal_stack = nullptr;
  size_t signal_stack_bytes = 0;
  stack_t host_signal_stack{nullptr, SS_DISABLE, 0};
  // call_timeout: one POSIX timer per thread, created on first use.
  bool has_timer = false;
  timer_t timer{};
  // Set while the thread's set-up sends itself the probe signal.
  volatile bool probing = false;
  // A fault while collecting a backtrace jumps back here.
  volatile bool in_backtrace = false;
  sigjmp_buf backtrace_jmp;
  // Breakpoints on stray privileged instructions (gadget_guard.h).
  int guard_fds[4] = {};
  int guard_count = 0;
};
static_assert(sizeof(ThreadRuntime) <= sizeof(ThreadBlock::runtime_private));

inline ThreadRuntime& ThreadRuntimeOf(ThreadBlock* tb) {
  return *std::launder(reinterpret_cast<ThreadRuntime*>(tb->runtime_private));
}

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_THREAD_RUNTIME_H_
