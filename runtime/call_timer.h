// call_timeout: a per-thread POSIX timer (SIGEV_THREAD_ID) armed for the
// nearest deadline among the thread's active timed calls. Deadlines live in
// the call frames (Frame::deadline_ns); only timed calls touch the timer.
#ifndef MPKBOX_RUNTIME_CALL_TIMER_H_
#define MPKBOX_RUNTIME_CALL_TIMER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "trampolines/thread_block.h"

namespace mpkbox::internal {

uint64_t MonotonicNowNs();

// Sets the deadline of the call about to enter (frame tb->depth) and arms.
absl::Status BeginTimedCall(ThreadBlock* tb, absl::Duration timeout);
// Clears that deadline after the call returned, and re-arms for the rest.
void EndTimedCall(ThreadBlock* tb);
// Arms for the nearest remaining deadline (async-signal-safe); a deadline
// already past is retried after `retry_ns`.
void RearmCallTimer(ThreadBlock* tb, uint64_t retry_ns);
// True if any active call's deadline has passed.
bool AnyDeadlinePassed(const ThreadBlock* tb, uint64_t now_ns);
// The nearest deadline of the active calls, 0 if none.
uint64_t NearestDeadlineNs(const ThreadBlock* tb);
void DeleteCallTimer(ThreadBlock* tb);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_CALL_TIMER_H_
