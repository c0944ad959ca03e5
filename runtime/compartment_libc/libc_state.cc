#include "runtime/compartment_libc/libc_state.h"

#include <unistd.h>

#include <atomic>

#include "trampolines/thread_block.h"

namespace mpkbox::internal {
namespace {

std::atomic<LibcState*> g_states[kMaxCompartments];
absl::Mutex g_exit_mutexes[kMaxCompartments];

}  // namespace

LibcState::LibcState(uint64_t domain_in, const CompartmentOptions& options_in)
    : domain(domain_in),
      name(options_in.name),
      options(options_in),
      stdio(options_in) {}

LibcState::~LibcState() { Reset(); }

void LibcState::Reset() {
  stdio.Flush();
  absl::MutexLock lock(&mu);
  mappings.clear();
  for (const auto& [fd, path] : files) close(fd);
  files.clear();
}

void SetLibcStateOfSlot(size_t slot, LibcState* state) {
  g_states[slot].store(state, std::memory_order_release);
}

absl::Mutex& LibcExitMutex(size_t slot) { return g_exit_mutexes[slot]; }

LibcState* LibcStateOfSlot(size_t slot) {
  return g_states[slot].load(std::memory_order_acquire);
}

}  // namespace mpkbox::internal
