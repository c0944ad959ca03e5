// SIGPIPE (THREAT_MODEL.md): a compartment allowed to write to a pipe whose
// reader is gone. The write runs with host rights in the SIGSYS handler, so
// the kernel's SIGPIPE goes to the host's thread: with the default action
// it kills the process. The compartment must get EPIPE instead.
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

// Compartment code: a raw write(2) of five bytes from its own stack.
long WriteHello(long fd) {
  char buf[] = {'h', 'e', 'l', 'l', 'o'};
  long ret;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(SYS_write), "D"(fd), "S"(buf), "d"(sizeof(buf))
               : "rcx", "r11", "memory");
  return ret;
}

// The host keeps a word the attack must not change.
volatile long host_word = 42;

// A pipe with its reader closed: writing to fds[1] raises SIGPIPE.
int BrokenPipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  close(fds[0]);
  return fds[1];
}

bool SigpipePending() {
  sigset_t pending;
  sigpending(&pending);
  return sigismember(&pending, SIGPIPE);
}

TEST(SigpipeDeathTest, ClosedPipeKillsTheHostWithoutContainment) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::SkipSigpipeContainmentForTesting();
        signal(SIGPIPE, SIG_DFL);
        const int fd = BrokenPipe();
        auto box = MakeBox({.name = "piper",
                            .syscalls = SyscallPolicy().AllowWrite({fd})});
        box->Call(&WriteHello, fd).IgnoreError();
        _exit(0);
      },
      ::testing::KilledBySignal(SIGPIPE), "");
}

TEST(SigpipeTest, ClosedPipeIsEpipeForTheCompartment) {
  signal(SIGPIPE, SIG_DFL);  // what kills a host that keeps it
  const int fd = BrokenPipe();
  ASSERT_GE(fd, 0);
  auto box = MakeBox(
      {.name = "piper", .syscalls = SyscallPolicy().AllowWrite({fd})});
  EXPECT_EQ(Value(box->Call(&WriteHello, fd)), -EPIPE);
  EXPECT_EQ(Value(box->Call(&WriteHello, fd)), -EPIPE);  // and again
  EXPECT_FALSE(SigpipePending());
  EXPECT_EQ(host_word, 42);
  // The process and the compartment still work.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  auto writer = MakeBox(
      {.name = "writer", .syscalls = SyscallPolicy().AllowWrite({fds[1]})});
  EXPECT_EQ(Value(writer->Call(&WriteHello, fds[1])), 5);
  close(fds[0]);
  close(fds[1]);
  close(fd);
}

// The host's own SIGPIPE, pending while the compartment writes, survives.
TEST(SigpipeTest, HostsPendingSigpipeIsNotConsumed) {
  signal(SIGPIPE, SIG_DFL);
  const int fd = BrokenPipe();
  ASSERT_GE(fd, 0);
  auto box = MakeBox(
      {.name = "piper", .syscalls = SyscallPolicy().AllowWrite({fd})});
  sigset_t pipe_only, saved;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &saved);
  ASSERT_EQ(write(fd, "x", 1), -1);  // the host's own write: its SIGPIPE
  ASSERT_TRUE(SigpipePending());
  EXPECT_EQ(Value(box->Call(&WriteHello, fd)), -EPIPE);
  EXPECT_TRUE(SigpipePending());
  const timespec now{};
  EXPECT_EQ(sigtimedwait(&pipe_only, nullptr, &now), SIGPIPE);
  EXPECT_FALSE(SigpipePending());
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  close(fd);
}

// The host's disposition is kept for every SIGPIPE that is not the
// compartment's: SIG_DFL still kills the host for its own broken pipe.
TEST(SigpipeDeathTest, HostsOwnSigpipeStillKillsWithDefault) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        signal(SIGPIPE, SIG_DFL);
        const int fd = BrokenPipe();
        auto box = MakeBox({.name = "piper",
                            .syscalls = SyscallPolicy().AllowWrite({fd})});
        if (Value(box->Call(&WriteHello, fd)) != -EPIPE) _exit(1);
        (void)!write(fd, "x", 1);  // the host's own: SIGPIPE kills
        _exit(0);
      },
      ::testing::KilledBySignal(SIGPIPE), "");
}

std::atomic<int> g_pipe_handled{0};
void CountPipe(int) { g_pipe_handled.fetch_add(1); }

// A host handler runs for the host's SIGPIPEs (its own write, a kill to the
// process), never for the compartment's.
TEST(SigpipeTest, HostHandlerRunsOnlyForTheHostsSigpipe) {
  struct sigaction sa {}, old{};
  sa.sa_handler = CountPipe;
  sigaction(SIGPIPE, &sa, &old);
  g_pipe_handled = 0;
  const int fd = BrokenPipe();
  ASSERT_GE(fd, 0);
  auto box = MakeBox(
      {.name = "piper", .syscalls = SyscallPolicy().AllowWrite({fd})});
  EXPECT_EQ(Value(box->Call(&WriteHello, fd)), -EPIPE);
  EXPECT_EQ(g_pipe_handled.load(), 0);
  EXPECT_EQ(write(fd, "x", 1), -1);
  EXPECT_EQ(g_pipe_handled.load(), 1);
  kill(getpid(), SIGPIPE);
  EXPECT_EQ(g_pipe_handled.load(), 2);
  EXPECT_EQ(Value(box->Call(&WriteHello, fd)), -EPIPE);
  EXPECT_EQ(g_pipe_handled.load(), 2);
  EXPECT_FALSE(SigpipePending());
  sigaction(SIGPIPE, &old, nullptr);
  close(fd);
}

// Ignored by the host: the kernel drops the compartment's too, and the
// disposition the host reads (and children inherit) stays SIG_IGN.
TEST(SigpipeTest, IgnoredStaysIgnored) {
  signal(SIGPIPE, SIG_IGN);
  const int fd = BrokenPipe();
  ASSERT_GE(fd, 0);
  auto box = MakeBox(
      {.name = "piper", .syscalls = SyscallPolicy().AllowWrite({fd})});
  EXPECT_EQ(Value(box->Call(&WriteHello, fd)), -EPIPE);
  EXPECT_FALSE(SigpipePending());
  struct {
    void* handler;
    unsigned long flags;
    void* restorer;
    uint64_t mask;
  } kernel{};
  ASSERT_EQ(syscall(SYS_rt_sigaction, SIGPIPE, nullptr, &kernel, 8), 0);
  EXPECT_EQ(kernel.handler, reinterpret_cast<void*>(SIG_IGN));
  signal(SIGPIPE, SIG_DFL);
  close(fd);
}

// SIGPIPE blocked on the thread, by pthread_sigmask or behind its back with
// a raw rt_sigprocmask: the compartment's SIGPIPE is not left pending.
TEST(SigpipeTest, BlockedSigpipeIsNotLeftPending) {
  signal(SIGPIPE, SIG_DFL);
  const int fd = BrokenPipe();
  ASSERT_GE(fd, 0);
  auto box = MakeBox(
      {.name = "piper", .syscalls = SyscallPolicy().AllowWrite({fd})});
  EXPECT_EQ(Value(box->Call(&WriteHello, fd)), -EPIPE);  // learns: unblocked
  sigset_t pipe_only, saved;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &saved);
  EXPECT_EQ(Value(box->Call(&WriteHello, fd)), -EPIPE);
  EXPECT_FALSE(SigpipePending());
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  EXPECT_EQ(Value(box->Call(&WriteHello, fd)), -EPIPE);  // unblocked again
  ASSERT_EQ(syscall(SYS_rt_sigprocmask, SIG_BLOCK, &pipe_only, &saved, 8), 0);
  EXPECT_EQ(Value(box->Call(&WriteHello, fd)), -EPIPE);
  EXPECT_FALSE(SigpipePending());
  ASSERT_EQ(syscall(SYS_rt_sigprocmask, SIG_SETMASK, &saved, nullptr, 8), 0);
  close(fd);
}

}  // namespace
}  // namespace mpkbox
