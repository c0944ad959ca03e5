#include "runtime/call_timer.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_format.h"
#include "runtime/signals.h"
#include "runtime/thread_runtime.h"

namespace mpkbox::internal {

uint64_t MonotonicNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + ts.tv_nsec;
}

namespace {

void Arm(ThreadRuntime& rt, uint64_t deadline_ns) {
  itimerspec spec{};
  if (deadline_ns != 0) {
    spec.it_value.tv_sec = deadline_ns / 1000000000u;
    spec.it_value.tv_nsec = deadline_ns % 1000000000u;
  }
  timer_settime(rt.timer, TIMER_ABSTIME, &spec, nullptr);
}

}  // namespace

absl::Status BeginTimedCall(ThreadBlock* tb, absl::Duration timeout) {
  ThreadRuntime& rt = ThreadRuntimeOf(tb);
  if (!rt.has_timer) {
    sigevent ev{};
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = TimerSignal();
    ev.sigev_value.sival_ptr = tb;  // tells our timer from anyone else's
    ev._sigev_un._tid = static_cast<pid_t>(syscall(SYS_gettid));
    if (timer_create(CLOCK_MONOTONIC, &ev, &rt.timer) != 0) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "cannot create the call_timeout timer: %s", strerror(errno)));
    }
    rt.has_timer = true;
  }
  const int64_t ns = std::max<int64_t>(absl::ToInt64Nanoseconds(timeout), 1);
  tb->frames[tb->depth].deadline_ns = MonotonicNowNs() + ns;
  RearmCallTimer(tb, 0);
  return absl::OkStatus();
}

void EndTimedCall(ThreadBlock* tb) {
  tb->frames[tb->depth].deadline_ns = 0;
  RearmCallTimer(tb, 1000000);
}

bool AnyDeadlinePassed(const ThreadBlock* tb, uint64_t now_ns) {
  for (uint64_t i = 0; i < tb->depth; ++i) {
    const uint64_t d = tb->frames[i].deadline_ns;
    if (d != 0 && d <= now_ns) return true;
  }
  return false;
}

uint64_t NearestDeadlineNs(const ThreadBlock* tb) {
  uint64_t nearest = 0;
  for (uint64_t i = 0; i < tb->depth; ++i) {
    const uint64_t d = tb->frames[i].deadline_ns;
    if (d != 0 && (nearest == 0 || d < nearest)) nearest = d;
  }
  return nearest;
}

void RearmCallTimer(ThreadBlock* tb, uint64_t retry_ns) {
  ThreadRuntime& rt = ThreadRuntimeOf(tb);
  if (!rt.has_timer) return;
  const uint64_t now = MonotonicNowNs();
  uint64_t nearest = 0;
  // Up to depth inclusive: BeginTimedCall fills the frame about to be pushed.
  const uint64_t last = std::min<uint64_t>(tb->depth, MPKBOX_MAX_DEPTH - 1);
  for (uint64_t i = 0; i <= last; ++i) {
    uint64_t d = tb->frames[i].deadline_ns;
    if (d == 0) continue;
    if (d <= now) d = now + std::max<uint64_t>(retry_ns, 1);
    if (nearest == 0 || d < nearest) nearest = d;
  }
  Arm(rt, nearest);
}

void DeleteCallTimer(ThreadBlock* tb) {
  ThreadRuntime& rt = ThreadRuntimeOf(tb);
  if (!rt.has_timer) return;
  timer_delete(rt.timer);
  rt.has_timer = false;
}

}  // namespace mpkbox::internal
