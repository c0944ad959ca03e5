// Syscall policy: compartment code makes real syscalls (raw `syscall`
// instructions, as an attacker would); Syscall User Dispatch turns each into
// SIGSYS, and the compartment's SyscallPolicy decides. The never-allowed
// classes of DESIGN.md 6 are attempted against host memory, which must stay
// unchanged; two of them are shown succeeding without dispatch, in a child.
#include <cpuid.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/syscall_dispatch.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::kEscaped;
using ::mpkbox::testing::kHostSecret;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

// Compartment code: a raw syscall, no libc wrapper (which would write errno).
long Sys(long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0,
         long f = 0) {
  long ret;
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  register long r9 asm("r9") = f;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
}

long Getppid() { return Sys(SYS_getppid); }

TEST(SyscallPolicyTest, DefaultDeniesEverything) {
  auto box = MakeBox({.name = "silent"});
  absl::Status s = box->Call(&Getppid).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("'silent'"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("syscall getppid (110)"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("policy denies it"));
  EXPECT_EQ(box->last_fault()->signal, SIGSYS);
  ASSERT_TRUE(box->Reset().ok());
}

TEST(SyscallPolicyTest, AllowErrnoAndFailRules) {
  auto allowed = MakeBox(
      {.name = "allowed", .syscalls = SyscallPolicy().Allow(SYS_getppid)});
  EXPECT_EQ(Value(allowed->Call(&Getppid)), getppid());
  auto errno_box = MakeBox({.name = "errno",
                            .syscalls = SyscallPolicy().Deny(SYS_getppid,
                                                             EACCES)});
  EXPECT_EQ(Value(errno_box->Call(&Getppid)), -EACCES);
  auto others = MakeBox(
      {.name = "others", .syscalls = SyscallPolicy()
                                         .DenyOthersWithErrno(ENOSYS)
                                         .Fail(SYS_getppid)});
  EXPECT_EQ(Value(others->Call(+[] { return Sys(SYS_getuid); })), -ENOSYS);
  EXPECT_EQ(others->Call(&Getppid).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(SyscallPolicyTest, PolicyErrorsAreClear) {
  auto never = Compartment::Create(
      {.name = "greedy", .syscalls = SyscallPolicy().Allow(SYS_mprotect)});
  ASSERT_FALSE(never.ok());
  EXPECT_EQ(never.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(never.status().message()), HasSubstr("'greedy'"));
  EXPECT_THAT(std::string(never.status().message()),
              HasSubstr("never allowed"));
  auto pointers = Compartment::Create(
      {.name = "reader", .syscalls = SyscallPolicy().Allow(SYS_read)});
  ASSERT_FALSE(pointers.ok());
  EXPECT_THAT(std::string(pointers.status().message()),
              HasSubstr("pointer arguments"));
  // Denying a never-allowed call with an errno is fine: it stays denied.
  EXPECT_TRUE(Compartment::Create({.name = "quiet",
                                   .syscalls = SyscallPolicy().Deny(
                                       SYS_mprotect, EPERM)})
                  .ok());
}

// Validation is plain host code: this runs on any CPU.
TEST(SyscallPolicyTest, ValidateRefusesWhatReachesPastPkru) {
  EXPECT_TRUE(SyscallPolicy().Validate().ok());
  EXPECT_TRUE(SyscallPolicy().Allow(SYS_getppid).Validate().ok());
  for (int nr : {SYS_mprotect, SYS_pkey_mprotect, SYS_rt_sigreturn,
                 SYS_clone, SYS_prctl, SYS_process_vm_writev}) {
    absl::Status s = SyscallPolicy().Allow(nr).Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << nr;
    EXPECT_THAT(std::string(s.message()), HasSubstr("never allowed")) << nr;
    EXPECT_FALSE(SyscallPolicy::NeverAllowedReason(nr).empty()) << nr;
  }
  absl::Status pointers = SyscallPolicy().Allow(SYS_read).Validate();
  EXPECT_THAT(std::string(pointers.message()), HasSubstr("pointer arguments"));
  EXPECT_TRUE(SyscallPolicy().Deny(SYS_mprotect, EPERM).Validate().ok());
}
MPKBOX_TEST_RUNS_WITHOUT_PKU(SyscallPolicyTest,
                             ValidateRefusesWhatReachesPastPkru);

long WriteFromStack(long fd) {
  char buf[] = {'h', 'e', 'l', 'l', 'o'};
  return Sys(SYS_write, fd, reinterpret_cast<long>(buf), sizeof(buf));
}
long WriteFrom(long fd, const char* p) {
  return Sys(SYS_write, fd, reinterpret_cast<long>(p), 4);
}

TEST(SyscallPolicyTest, WriteOnlyToListedDescriptorsFromOwnMemory) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_NONBLOCK), 0);
  auto box = MakeBox({.name = "writer",
                      .syscalls = SyscallPolicy().AllowWrite({fds[1]})});
  EXPECT_EQ(Value(box->Call(&WriteFromStack, fds[1])), 5);
  char got[8] = {};
  EXPECT_EQ(read(fds[0], got, sizeof(got)), 5);
  EXPECT_STREQ(got, "hello");
  EXPECT_EQ(Value(box->Call(&WriteFromStack, 2)), -EBADF);
  static const char kHostWord[] = "host";
  EXPECT_EQ(Value(box->Call(&WriteFrom, fds[1], kHostWord)), -EFAULT);
  EXPECT_EQ(read(fds[0], got, sizeof(got)), -1);  // nothing leaked out
  close(fds[0]);
  close(fds[1]);
}

long WriteFromHeap(long fd) {
  char* volatile buf = static_cast<char*>(malloc(4));
  memcpy(buf, "heap", 4);
  long n = Sys(SYS_write, fd, reinterpret_cast<long>(buf), 4);
  free(buf);
  return n;
}
char* HeapString() {
  char* p = static_cast<char*>(malloc(8));
  memcpy(p, "theirs", 7);
  return p;
}

// The compartment's heap is its memory too; another compartment's is not.
TEST(SyscallPolicyTest, HeapBuffersPassThePointerCheck) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_NONBLOCK), 0);
  auto box = MakeBox({.name = "writer",
                      .syscalls = SyscallPolicy().AllowWrite({fds[1]})});
  auto other = MakeBox({.name = "other"});
  EXPECT_EQ(Value(box->Call(&WriteFromHeap, fds[1])), 4);
  char got[8] = {};
  EXPECT_EQ(read(fds[0], got, sizeof(got)), 4);
  EXPECT_STREQ(got, "heap");
  const char* theirs = Value(other->Call(&HeapString));
  ASSERT_TRUE(other->Contains(theirs, 7));
  EXPECT_EQ(Value(box->Call(&WriteFrom, fds[1], theirs)), -EFAULT);
  EXPECT_EQ(read(fds[0], got, sizeof(got)), -1);  // nothing leaked out
  close(fds[0]);
  close(fds[1]);
}

long RandomIntoStack() {
  unsigned char buf[32] = {};
  long n = Sys(SYS_getrandom, reinterpret_cast<long>(buf), sizeof(buf), 0);
  int nonzero = 0;
  for (unsigned char c : buf) nonzero += c != 0;
  return n == 32 && nonzero > 8 ? 1 : n;
}
long FutexOnStack() {
  volatile uint32_t word = 7;
  long wake = Sys(SYS_futex, reinterpret_cast<long>(&word),
                  FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1);
  long wait = Sys(SYS_futex, reinterpret_cast<long>(&word),
                  FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 8, 0);  // 8 != 7
  long shared = Sys(SYS_futex, reinterpret_cast<long>(&word), FUTEX_WAKE, 1);
  return wake == 0 && wait == -EAGAIN && shared == -ENOSYS ? 1 : 0;
}
long FutexOn(long addr) {
  return Sys(SYS_futex, addr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1);
}
long ClockFallback() {
  timespec ts{};
  long r = Sys(SYS_clock_gettime, CLOCK_MONOTONIC, reinterpret_cast<long>(&ts));
  return r == 0 && ts.tv_sec + ts.tv_nsec > 0 ? 1 : r;
}

TEST(SyscallPolicyTest, CheckedRulesForRandomFutexAndClock) {
  auto box = MakeBox({.name = "checked",
                      .syscalls = SyscallPolicy()
                                      .AllowGetrandom()
                                      .AllowFutex()
                                      .AllowClock()});
  EXPECT_EQ(Value(box->Call(&RandomIntoStack)), 1);
  EXPECT_EQ(Value(box->Call(&FutexOnStack)), 1);
  static uint32_t host_word = 0;
  EXPECT_EQ(Value(box->Call(&FutexOn, reinterpret_cast<long>(&host_word))),
            -EFAULT);
  EXPECT_EQ(Value(box->Call(&ClockFallback)), 1);
}

// vDSO functions read the vvar page (key 0) and make no syscall.
long VdsoCalls() {
  timespec ts{};
  timeval tv{};
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0 || ts.tv_sec == 0) return 1;
  if (gettimeofday(&tv, nullptr) != 0 || tv.tv_sec == 0) return 2;
  if (time(nullptr) <= 0) return 3;
  if (sched_getcpu() < 0) return 4;  // rseq is off: glibc asks the vDSO
  return 0;
}

TEST(SyscallPolicyTest, VdsoCallsWorkWithoutSyscalls) {
  auto box = MakeBox({.name = "clocks"});  // denies every syscall
  ASSERT_TRUE(box->Call(+[] { return 0; }).ok());
  const uint64_t before = internal::EmulatedSyscalls();
  EXPECT_EQ(Value(box->Call(&VdsoCalls)), 0);
  EXPECT_EQ(internal::EmulatedSyscalls(), before);
}

// --- Never allowed, whatever the policy ------------------------------------

char* host_page;  // a host page the attacks aim at, filled with 'H'

void MapHostPage() {
  if (host_page != nullptr) return;
  host_page = static_cast<char*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  memset(host_page, 'H', 4096);
}
bool HostPageIntact() {
  for (int i = 0; i < 4096; ++i) {
    if (host_page[i] != 'H') return false;
  }
  return true;
}

struct Attack {
  const char* name;
  long (*run)(long page);
};

long AttackInt80(long) {
  long ret;
  asm volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory");  // getpid
  return ret;
}

const Attack kAttacks[] = {
    {"mprotect", +[](long p) { return Sys(SYS_mprotect, p, 4096, PROT_NONE); }},
    {"pkey_mprotect",
     +[](long p) { return Sys(SYS_pkey_mprotect, p, 4096, PROT_READ, 0); }},
    {"mmap_fixed", +[](long p) {
       return Sys(SYS_mmap, p, 4096, PROT_READ | PROT_WRITE,
                  MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
     }},
    {"munmap", +[](long p) { return Sys(SYS_munmap, p, 4096); }},
    {"mremap", +[](long p) {
       return Sys(SYS_mremap, p, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED,
                  p + 8192);
     }},
    {"madvise_dontneed",
     +[](long p) { return Sys(SYS_madvise, p, 4096, MADV_DONTNEED); }},
    {"pkey_alloc", +[](long) { return Sys(SYS_pkey_alloc, 0, 0); }},
    {"pkey_free", +[](long) { return Sys(SYS_pkey_free, 1); }},
    {"rt_sigaction", +[](long) {
       long act[4] = {1 /* SIG_IGN */, 0, 0, 0};
       return Sys(SYS_rt_sigaction, SIGSEGV, reinterpret_cast<long>(act), 0, 8);
     }},
    {"sigaltstack", +[](long) {
       stack_t ss{};
       ss.ss_flags = SS_DISABLE;
       return Sys(SYS_sigaltstack, reinterpret_cast<long>(&ss), 0);
     }},
    {"kill", +[](long) { return Sys(SYS_kill, Sys(SYS_getpid), SIGKILL); }},
    {"tgkill", +[](long) {
       return Sys(SYS_tgkill, Sys(SYS_getpid), Sys(SYS_gettid), SIGSEGV);
     }},
    {"open_proc_self_mem", +[](long) {
       const char path[] = {'/', 'p', 'r', 'o', 'c', '/', 's', 'e', 'l',
                            'f', '/', 'm', 'e', 'm', 0};
       return Sys(SYS_openat, AT_FDCWD, reinterpret_cast<long>(path), O_RDWR);
     }},
    {"process_vm_writev", +[](long p) {
       char zeros[16] = {};
       iovec local{zeros, sizeof(zeros)}, remote{reinterpret_cast<void*>(p), 16};
       return Sys(SYS_process_vm_writev, Sys(SYS_getpid),
                  reinterpret_cast<long>(&local), 1,
                  reinterpret_cast<long>(&remote), 1, 0);
     }},
    {"ptrace", +[](long) { return Sys(SYS_ptrace, 0 /* TRACEME */); }},
    {"clone", +[](long) { return Sys(SYS_clone, SIGCHLD, 0, 0, 0, 0); }},
    {"fork", +[](long) { return Sys(SYS_fork); }},
    {"vfork", +[](long) { return Sys(SYS_vfork); }},
    {"execve", +[](long) {
       const char path[] = {'/', 'b', 'i', 'n', '/', 't', 'r', 'u', 'e', 0};
       return Sys(SYS_execve, reinterpret_cast<long>(path), 0, 0);
     }},
    {"seccomp", +[](long) { return Sys(SYS_seccomp, 0 /* STRICT */, 0, 0); }},
    {"prctl_dispatch_off", +[](long) { return Sys(SYS_prctl, 59, 0, 0, 0, 0); }},
    {"arch_prctl_set_fs", +[](long) { return Sys(SYS_arch_prctl, 0x1002, 0); }},
    {"io_uring_setup", +[](long) { return Sys(SYS_io_uring_setup, 8, 0); }},
    {"userfaultfd", +[](long) { return Sys(SYS_userfaultfd, 0); }},
    {"perf_event_open",
     +[](long) { return Sys(SYS_perf_event_open, 0, 0, -1, -1, 0); }},
    {"int80", AttackInt80},
};

class NeverAllowedTest : public ::testing::TestWithParam<Attack> {};

TEST_P(NeverAllowedTest, RefusedAndHostUnchanged) {
  MapHostPage();
  // The most permissive policy there is: unlisted calls get an errno.
  auto box = MakeBox({.name = "attacker",
                      .syscalls = SyscallPolicy().DenyOthersWithErrno(EPERM)});
  const Attack& attack = GetParam();
  absl::Status s =
      box->Call(attack.run, reinterpret_cast<long>(host_page)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(std::string(s.message()),
              ::testing::AnyOf(HasSubstr("never allowed"), HasSubstr("32-bit")));
  EXPECT_TRUE(HostPageIntact());
  // Dispatch is still on: the next syscall is judged as well.
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(Value(box->Call(&Getppid)), -EPERM);
  EXPECT_EQ(getpid(), getpid());  // and the process is here
}

INSTANTIATE_TEST_SUITE_P(
    DesignSection6, NeverAllowedTest, ::testing::ValuesIn(kAttacks),
    [](const ::testing::TestParamInfo<Attack>& param_info) {
      return std::string(param_info.param.name);
    });

// --- The attacks succeed without dispatch (controls, in child processes) ---

void RetagAndWrite(long page, long key) {
  Sys(SYS_pkey_mprotect, page, 4096, PROT_READ | PROT_WRITE, key);
  reinterpret_cast<volatile char*>(page)[0] = 'X';
  if (reinterpret_cast<volatile char*>(page)[0] == 'X') {
    Sys(SYS_exit_group, kEscaped);
  }
}

TEST(SyscallControlDeathTest, PkeyMprotectEscapesWithoutDispatch) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::SkipSyscallDispatchForTesting();
        MapHostPage();
        auto box = MakeBox({.name = "retagger"});
        box->Call(&RetagAndWrite, reinterpret_cast<long>(host_page),
                  static_cast<long>(box->pkey()))
            .IgnoreError();
        _exit(0);
      },
      ::testing::ExitedWithCode(kEscaped), "");
  MapHostPage();
  auto box = MakeBox({.name = "retagger"});
  absl::Status s = box->Call(&RetagAndWrite, reinterpret_cast<long>(host_page),
                             static_cast<long>(box->pkey()));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_TRUE(HostPageIntact());
}

// A forged rt_sigreturn: a copy of a real kernel frame, with the payload as
// rip and PKRU 0 in its XSAVE image (DESIGN.md 5b).
// Read by the forging code inside: pages that stay readable to it.
MPKBOX_COMPARTMENT_READABLE char fp_template[16384];
MPKBOX_COMPARTMENT_READABLE ucontext_t uc_template;
MPKBOX_COMPARTMENT_READABLE size_t fp_size;

void CaptureFrame(int, siginfo_t*, void* raw) {
  auto* uc = static_cast<ucontext_t*>(raw);
  uc_template = *uc;
  const auto* fx = reinterpret_cast<const char*>(uc->uc_mcontext.fpregs);
  uint32_t extended;
  memcpy(&extended, fx + 464 + 4, 4);
  fp_size = extended < sizeof(fp_template) ? extended : sizeof(fp_template);
  memcpy(fp_template, fx, fp_size);
}

void CaptureTemplate() {
  struct sigaction sa {}, old{};
  sa.sa_sigaction = CaptureFrame;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGUSR2, &sa, &old);
  raise(SIGUSR2);
  sigaction(SIGUSR2, &old, nullptr);
}

MPKBOX_COMPARTMENT_READABLE long pkru_offset;

void ForgeSigreturn() {
  struct Frame {
    uint64_t pretcode;
    ucontext_t uc;
  };
  alignas(64) char fp[sizeof(fp_template)];
  alignas(16) char payload_stack[4096];
  alignas(16) Frame frame;
  memcpy(fp, fp_template, fp_size);
  memset(fp + pkru_offset, 0, 4);  // PKRU 0: every key open
  reinterpret_cast<uint64_t*>(fp + 512)[0] |= uint64_t{1} << 9;
  memcpy(&frame.uc, &uc_template, sizeof(frame.uc));
  frame.uc.uc_link = nullptr;
  frame.uc.uc_mcontext.fpregs = reinterpret_cast<fpregset_t>(fp);
  frame.uc.uc_mcontext.gregs[REG_RIP] =
      reinterpret_cast<greg_t>(&mpkbox_test_payload);
  frame.uc.uc_mcontext.gregs[REG_RSP] =
      reinterpret_cast<greg_t>(payload_stack + sizeof(payload_stack) - 8);
  frame.uc.uc_mcontext.gregs[REG_EFL] = 0x202;
  asm volatile(
      "mov %0, %%rsp\n"
      "mov $15, %%eax\n"
      "syscall\n"
      :
      : "r"(&frame.uc)
      : "rax", "memory");
}

TEST(SyscallControlDeathTest, ForgedSigreturnEscapesWithoutDispatch) {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  ASSERT_TRUE(__get_cpuid_count(0xd, 9, &eax, &ebx, &ecx, &edx));
  pkru_offset = ebx;
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        internal::SkipSyscallDispatchForTesting();
        auto box = MakeBox({.name = "forger"});
        ASSERT_TRUE(box->Call(+[] {}).ok());  // this thread is prepared
        CaptureTemplate();
        box->Call(&ForgeSigreturn).IgnoreError();
        _exit(0);
      },
      ::testing::ExitedWithCode(kEscaped), "");
  auto box = MakeBox({.name = "forger"});
  ASSERT_TRUE(box->Call(+[] {}).ok());
  CaptureTemplate();
  absl::Status s = box->Call(&ForgeSigreturn);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("rt_sigreturn"));
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
}

TEST(SyscallDispatchDeathTest, ForkedChildIsStillFiltered) {
  auto box = MakeBox({.name = "parent"});
  ASSERT_TRUE(box->Call(+[] {}).ok());
  GTEST_FLAG_SET(death_test_style, "fast");  // the child must be a fork
  EXPECT_EXIT(
      {
        // fork drops dispatch in the child; the runtime arms it again.
        absl::Status s = box->Call(&Getppid).status();
        _exit(s.code() == absl::StatusCode::kPermissionDenied ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace mpkbox
