// The setters of runtime/testing_switches.h: compiled into mpkbox_testing
// only.
#include "runtime/testing_switches.h"

#include <limits>

#include "allocator/huge_chunks.h"

#ifndef MPKBOX_TESTING_SWITCHES
#error "testing_switches.cc belongs to the test suite's library only"
#endif

namespace mpkbox::internal {

void PretendNoPkuForTesting() {
  g_testing_switches.pretend_no_pku.store(true);
}

void SkipRseqUnregistrationForTesting() {
  g_testing_switches.skip_rseq_unregistration.store(true);
}

void SkipSyscallDispatchForTesting() {
  g_testing_switches.skip_syscall_dispatch.store(true);
}

void SkipSigpipeContainmentForTesting() {
  g_testing_switches.skip_sigpipe_containment.store(true);
}

void SkipFilesBeneathForTesting() {
  g_testing_switches.skip_files_beneath.store(true);
}

void SkipFsRepairForTesting() {
  g_testing_switches.skip_fs_repair.store(true);
}

void SkipSealingForTesting() {
  g_testing_switches.skip_sealing.store(true);
}

void SkipDispositionCheckForTesting() {
  g_testing_switches.skip_disposition_check.store(true);
}

void AllowExecutableMappingsForTesting() {
  g_testing_switches.allow_exec_mappings.store(true);
}

void SkipStdioMemoryCheckForTesting() {
  g_testing_switches.skip_stdio_memory_check.store(true);
}

void SkipFutexAddressCheckForTesting() {
  g_testing_switches.skip_futex_address_check.store(true);
}

void SkipEvictionRetagForTesting() {
  g_testing_switches.skip_eviction_retag.store(true);
}

void EvictRunningCompartmentsForTesting() {
  g_testing_switches.evict_running.store(true);
}

void FailNextResetForTesting() {
  g_testing_switches.fail_next_reset.store(true);
}

void CoarseDispositionClockForTesting() {
  g_testing_switches.coarse_disposition_clock.store(true);
}

void SkipStackScrubForTesting() {
  g_testing_switches.skip_stack_scrub.store(true);
}

void SkipSparseHugeBudgetForTesting() {
  SetSparseHugeBudget(std::numeric_limits<size_t>::max());
}

}  // namespace mpkbox::internal
