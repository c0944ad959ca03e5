// Switches that turn one protection off, so that a test can show the attack
// it stops succeeding without it. Only the test suite's copy of the library
// (mpkbox_testing, built with MPKBOX_TESTING_SWITCHES) has them: in
// libmpkbox.a each reads as a constant false, its code compiles away and the
// setters do not exist.
#ifndef MPKBOX_RUNTIME_TESTING_SWITCHES_H_
#define MPKBOX_RUNTIME_TESTING_SWITCHES_H_

#include <atomic>

namespace mpkbox::internal {

#ifdef MPKBOX_TESTING_SWITCHES
struct TestingSwitches {
  std::atomic<bool> pretend_no_pku{false};
  std::atomic<bool> skip_rseq_unregistration{false};
  std::atomic<bool> skip_syscall_dispatch{false};
  std::atomic<bool> skip_sigpipe_containment{false};
  std::atomic<bool> skip_fs_repair{false};
  std::atomic<bool> skip_sealing{false};
  std::atomic<bool> skip_disposition_check{false};
  std::atomic<bool> allow_exec_mappings{false};
  std::atomic<bool> skip_stdio_memory_check{false};
  std::atomic<bool> skip_futex_address_check{false};
  std::atomic<bool> skip_files_beneath{false};
  std::atomic<bool> skip_eviction_retag{false};
  std::atomic<bool> evict_running{false};
  std::atomic<bool> fail_next_reset{false};
  std::atomic<bool> coarse_disposition_clock{false};
  std::atomic<bool> skip_stack_scrub{false};
};
inline TestingSwitches g_testing_switches;
#define MPKBOX_SWITCHED_OFF(name) \
  (::mpkbox::internal::g_testing_switches.name.load(std::memory_order_relaxed))
// A one-shot switch: true once, then off again.
#define MPKBOX_TAKE_SWITCH(name) \
  (::mpkbox::internal::g_testing_switches.name.exchange(false))
#else
#define MPKBOX_SWITCHED_OFF(name) false
#define MPKBOX_TAKE_SWITCH(name) false
#endif

// IsSupported() answers false from now on.
void PretendNoPkuForTesting();
// Threads prepared afterwards keep their rseq registration.
void SkipRseqUnregistrationForTesting();
// Threads prepared afterwards run compartments without Syscall User
// Dispatch.
void SkipSyscallDispatchForTesting();
// A SIGPIPE raised by host-side work for a compartment reaches the host.
void SkipSigpipeContainmentForTesting();
// Before Runtime::Init: the signal entry never repairs FS.
void SkipFsRepairForTesting();
// Before Runtime::Init: nothing is sealed (mseal).
void SkipSealingForTesting();
// Handlers installed with a raw rt_sigaction are never looked for.
void SkipDispositionCheckForTesting();
// Loaded code's mprotect may make its own mappings executable
// (compartment_libc/memory.cc).
void AllowExecutableMappingsForTesting();
// The stdio sink takes loaded code's bytes from any address.
void SkipStdioMemoryCheckForTesting();
// Loaded code's futex requests (compartment_libc/threads.cc) take any
// address: the attack on the host's futex words succeeds.
void SkipFutexAddressCheckForTesting();
// Paths beneath a granted directory are opened as the kernel resolves
// them, following symlinks and "..", without RESOLVE_BENEATH.
void SkipFilesBeneathForTesting();
// An evicted compartment's memory keeps its hardware key, which the key
// cache then hands to another compartment (slot_registry.cc).
void SkipEvictionRetagForTesting();
// The key cache evicts compartments that a thread is running, entering or
// suspended in (slot_registry.cc's InUse is not asked).
void EvictRunningCompartmentsForTesting();
// The next Compartment::Reset fails (after doing its work) with
// kInternal, as a failed madvise or arena reset would, and the compartment
// refuses calls.
void FailNextResetForTesting();
// The raw-handler check after a Reset times its millisecond with
// CLOCK_MONOTONIC_COARSE, as it did (signal_actions.cc): one clock tick
// (4 ms at HZ=250) may pass before it looks again.
void CoarseDispositionClockForTesting();
// Reset keeps each thread's stack as it is, old contents included
// (slot_registry.cc's StaleAllContexts does not scrub it).
void SkipStackScrubForTesting();
// Sparse heap chunks become huge pages without the process-wide budget
// (allocator/huge_chunks.h): every often-missing compartment takes 2 MiB.
void SkipSparseHugeBudgetForTesting();
// Removes every guard breakpoint and arms none from now on.
void DisableGadgetGuardsForTesting();
// Puts the host's stacks and data back on key 0 (readable to compartments)
// and tags no more of them from now on.
void ExposeHostMemoryForTesting();

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_TESTING_SWITCHES_H_
