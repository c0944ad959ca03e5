// Attacks on the gate itself, done from compartment code with real jumps:
// - a jump straight to each WRPKRU in the gate with a forged EAX traps;
// - the same jump to a bare, unchecked WRPKRU (the control) does open keys;
// - the gate carries no WRPKRU/XRSTOR bytes but its checked sites;
// - entering a compartment leaks no host register, and a compartment that
//   trashes callee-saved registers cannot corrupt the host's.
#include <cpuid.h>
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/gadget_guard.h"
#include "runtime/keys/pku.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"
#include "trampolines/gate_layout.h"

extern "C" char mpkbox_gate_begin[], mpkbox_gate_end[];
extern "C" char mpkbox_signal_begin[], mpkbox_signal_end[];
extern "C" char mpkbox_host_rights_begin[], mpkbox_host_rights_end[];
extern "C" char mpkbox_callback_stubs[];

// Compartment code written the way an attacker would, in assembly:
// - probe_regs ORs together every register a host value could ride in
//   (all but rdi, the argument, rax, rsp and r11, the callee's address), then
//   overwrites all callee-saved registers before returning.
// - bare_wrpkru is the control gadget: an unchecked WRPKRU; bare_xrstor the
//   same for XRSTOR (rdi: the XSAVE area, eax: the mask).
asm(R"(
  .text
  .globl mpkbox_test_probe_regs
  .type mpkbox_test_probe_regs, @function
mpkbox_test_probe_regs:
  mov %rbx, %rax
  or %rbp, %rax
  or %rsi, %rax
  or %rdx, %rax
  or %rcx, %rax
  or %r8, %rax
  or %r9, %rax
  or %r10, %rax
  or %r12, %rax
  or %r13, %rax
  or %r14, %rax
  or %r15, %rax
  por %xmm1, %xmm0
  por %xmm2, %xmm0
  por %xmm3, %xmm0
  por %xmm4, %xmm0
  por %xmm5, %xmm0
  por %xmm6, %xmm0
  por %xmm7, %xmm0
  por %xmm8, %xmm0
  por %xmm9, %xmm0
  por %xmm10, %xmm0
  por %xmm11, %xmm0
  por %xmm12, %xmm0
  por %xmm13, %xmm0
  por %xmm14, %xmm0
  por %xmm15, %xmm0
  movq %xmm0, %rdx
  or %rdx, %rax
  pextrq $1, %xmm0, %rdx
  or %rdx, %rax
  mov $0x6666, %ebx
  mov %rbx, %rbp
  mov %rbx, %r12
  mov %rbx, %r13
  mov %rbx, %r14
  mov %rbx, %r15
  ret
  .size mpkbox_test_probe_regs, . - mpkbox_test_probe_regs

  .globl mpkbox_test_bare_wrpkru
  .type mpkbox_test_bare_wrpkru, @function
mpkbox_test_bare_wrpkru:
  mov %edi, %eax
  xor %ecx, %ecx
  xor %edx, %edx
  wrpkru
  ret
  .size mpkbox_test_bare_wrpkru, . - mpkbox_test_bare_wrpkru

  .globl mpkbox_test_bare_xrstor
  .type mpkbox_test_bare_xrstor, @function
mpkbox_test_bare_xrstor:
  movl $0x200, %eax
  xor %edx, %edx
  xrstor (%rdi)
  ret
  .size mpkbox_test_bare_xrstor, . - mpkbox_test_bare_xrstor
)");
extern "C" uint64_t mpkbox_test_probe_regs(uint64_t);
extern "C" void mpkbox_test_bare_wrpkru(uint32_t);
extern "C" void mpkbox_test_bare_xrstor(const void* area);

namespace mpkbox {
namespace {

using ::mpkbox::testing::AttackFromInside;
using ::mpkbox::testing::attack_regs;
using ::mpkbox::testing::AttackRegs;
using ::mpkbox::testing::ContainedAsForgery;
using ::mpkbox::testing::FindBytes;
using ::mpkbox::testing::kEscaped;
using ::mpkbox::testing::kHostSecret;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::PayloadRegs;
using ::mpkbox::testing::Value;

// Every WRPKRU of trampolines/: the gate's, the signal entry's, then
// host_rights.S's.
std::vector<uintptr_t> GateWrpkruSites() {
  std::vector<uintptr_t> sites;
  using Range = std::pair<const char*, const char*>;
  for (auto [begin, end] : {Range{mpkbox_gate_begin, mpkbox_gate_end},
                            Range{mpkbox_signal_begin, mpkbox_signal_end},
                            Range{mpkbox_host_rights_begin,
                                  mpkbox_host_rights_end}}) {
    for (uintptr_t site : FindBytes(begin, end, {0x0f, 0x01, 0xef})) {
      sites.push_back(site);
    }
  }
  return sites;
}

bool InHostRights(uintptr_t site) {
  return site >= reinterpret_cast<uintptr_t>(mpkbox_host_rights_begin) &&
         site < reinterpret_cast<uintptr_t>(mpkbox_host_rights_end);
}

// The XRSTORs (0f ae /5, any prefix) in [begin, end).
std::vector<uintptr_t> XrstorSites(const char* begin, const char* end) {
  std::vector<uintptr_t> sites;
  for (uintptr_t p : FindBytes(begin, end, {0x0f, 0xae})) {
    const uint8_t modrm = reinterpret_cast<const uint8_t*>(p)[2];
    if (((modrm >> 3) & 7) == 5 && (modrm >> 6) != 3) sites.push_back(p);
  }
  return sites;
}

// AttackFromInside then jumps to `site` with EAX = eax, ECX = EDX = 0 (a
// WRPKRU needs them), and every other register and stack slot the code
// after the WRPKRU could use to continue pointing at the payload.
void AimAt(uintptr_t site, uint64_t eax) {
  AttackRegs r = PayloadRegs();
  r.rax = eax;
  r.rcx = r.rdx = 0;
  attack_regs = r;
  mpkbox_test_jump_target = site;
}

// A callback stub address compartment code calls (key 0: it reads it).
MPKBOX_COMPARTMENT_READABLE uint64_t stub_address;

TEST(GateAttackTest, TrampolinesHaveExactlyEightWrpkruAndThreeXrstor) {
  // The gate: into a compartment (call, callback return), out of one
  // (return, callback entry, exception pad). The signal entry's, to the host,
  // and the resume stub's, into a compartment. mpkbox_open_all_keys's. Any
  // other would be a gadget.
  EXPECT_EQ(GateWrpkruSites().size(), 8u);
  // mpkbox_xrstor_into_frame's: the frame, the host's area (xrstor or
  // xrstor64), all before one check.
  EXPECT_EQ(XrstorSites(mpkbox_host_rights_begin, mpkbox_host_rights_end)
                .size() +
                FindBytes(mpkbox_host_rights_begin, mpkbox_host_rights_end,
                          {0x0f, 0xc7})
                    .size(),
            3u);
  // XRSTOR family: 0F AE /5 and 0F C7 /3 (XRSTORS), any prefix.
  for (uint8_t modrm = 0; modrm < 0xC0; ++modrm) {
    if (((modrm >> 3) & 7) == 5) {
        EXPECT_TRUE(FindBytes(mpkbox_gate_begin, mpkbox_gate_end,
                            {0x0f, 0xae, modrm})
                      .empty())
          << "XRSTOR with modrm " << int(modrm);
      EXPECT_TRUE(FindBytes(mpkbox_signal_begin, mpkbox_signal_end,
                            {0x0f, 0xae, modrm})
                      .empty())
          << "XRSTOR with modrm " << int(modrm);
    }
    if (((modrm >> 3) & 7) == 3) {
      EXPECT_TRUE(FindBytes(mpkbox_gate_begin, mpkbox_gate_end,
                            {0x0f, 0xc7, modrm})
                      .empty())
          << "XRSTORS with modrm " << int(modrm);
      EXPECT_TRUE(FindBytes(mpkbox_signal_begin, mpkbox_signal_end,
                            {0x0f, 0xc7, modrm})
                      .empty())
          << "XRSTORS with modrm " << int(modrm);
    }
  }
}

TEST(GateAttackDeathTest, ControlBareWrpkruOpensHostMemory) {
  // Without a check after it, one WRPKRU is a full escape (with the
  // breakpoints on stray WRPKRUs off: gadget_guard_test.cc shows they stop
  // this one too).
  auto box = MakeBox({.name = "control"});
  EXPECT_EXIT(
      {
        internal::DisableGadgetGuardsForTesting();
        static_cast<void>(box->Call(+[] {
          mpkbox_test_bare_wrpkru(0);
          mpkbox_test_payload();
        }));
        _exit(0);
      },
      ::testing::ExitedWithCode(kEscaped), "");
}

// In a child process: if a check were missing, the payload would run with
// host rights and exit 77 (as the control above does).
class ForgedEaxDeathTest : public ::testing::TestWithParam<int> {};

TEST_P(ForgedEaxDeathTest, JumpToWrpkruIsContained) {
  std::vector<uintptr_t> sites = GateWrpkruSites();
  ASSERT_LT(static_cast<size_t>(GetParam()), sites.size());
  auto box = MakeBox({.name = "forger"});
  const uintptr_t site = sites[GetParam()];
  // The legitimate EAX of a site that returns to the host is 0 (it follows
  // three XORs); of a site that enters a compartment, that compartment's
  // PKRU. Forge everything else: all keys open, or the compartment's value
  // with more keys opened.
  const uint8_t* p = reinterpret_cast<const uint8_t*>(site);
  const bool to_host = memcmp(p - 6, "\x31\xc0\x31\xc9\x31\xd2", 6) == 0;
  std::vector<uint64_t> forged = {box->pkru() & 0xff};
  forged.push_back(to_host ? 1 : 0);
  // mpkbox_open_all_keys's legitimate EAX is 0, but never from a compartment.
  if (InHostRights(site)) forged.push_back(0);
  for (uint64_t eax : forged) {
    AimAt(site, eax);
    EXPECT_EXIT(
        {
          absl::Status s = box->Call(&AttackFromInside);
          _exit(ContainedAsForgery(box.get(), s) ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "")
        << "site " << GetParam() << " eax " << eax;
  }
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
}

INSTANTIATE_TEST_SUITE_P(EachSite, ForgedEaxDeathTest,
                         ::testing::Range(0, 8));

// An XSAVE area in compartment memory whose only state is PKRU = 0 (every
// key open): what an XRSTOR with PKRU in its mask would load.
void* OpenAllKeysArea(Compartment* box) {
  absl::StatusOr<void*> mem = box->Allocate(8192, 64);  // XRSTOR: 64-aligned
  if (!mem.ok()) return nullptr;
  auto* area = static_cast<uint8_t*>(*mem);
  memset(area, 0, 8192);
  unsigned size, offset, ecx, edx;
  __cpuid_count(0xd, 9, size, offset, ecx, edx);
  const uint64_t xstate_bv = uint64_t{1} << 9;
  memcpy(area + 512, &xstate_bv, sizeof(xstate_bv));
  memset(area + offset, 0, 4);  // PKRU
  return area;
}

TEST(GateAttackDeathTest, ControlBareXrstorOpensHostMemory) {
  auto box = MakeBox({.name = "control"});
  static void* area = OpenAllKeysArea(box.get());
  ASSERT_NE(area, nullptr);
  EXPECT_EXIT(
      {
        internal::DisableGadgetGuardsForTesting();
        static_cast<void>(box->Call(+[] {
          mpkbox_test_bare_xrstor(area);
          mpkbox_test_payload();
        }));
        _exit(0);
      },
      ::testing::ExitedWithCode(kEscaped), "");
}

// mpkbox_xrstor_into_frame's XRSTORs, reached straight from a compartment
// with PKRU in the mask and that area: the check after them traps.
TEST(GateAttackDeathTest, JumpToHostRightsXrstorIsContained) {
  const std::vector<uintptr_t> sites =
      XrstorSites(mpkbox_host_rights_begin, mpkbox_host_rights_end);
  ASSERT_EQ(sites.size(), 3u);
  auto box = MakeBox({.name = "xrstor-forger"});
  void* area = OpenAllKeysArea(box.get());
  ASSERT_NE(area, nullptr);
  for (uintptr_t site : sites) {
    // From its REX prefix (REX.B for r11, REX.W for xrstor64).
    const uint8_t* p = reinterpret_cast<const uint8_t*>(site);
    AttackRegs r = PayloadRegs();
    r.rax = 0x200;
    r.rcx = r.rdx = 0;
    r.rdi = r.r11 = reinterpret_cast<uint64_t>(area);
    attack_regs = r;
    mpkbox_test_jump_target = (p[-1] & 0xf0) == 0x40 ? site - 1 : site;
    EXPECT_EXIT(
        {
          absl::Status s = box->Call(&AttackFromInside);
          _exit(ContainedAsForgery(box.get(), s) ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "")
        << std::hex << site;
  }
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
}

TEST(GateAttackTest, CallbackEntryRejectsUnregisteredSlot) {
  auto box = MakeBox({.name = "stub-abuser"});
  stub_address = reinterpret_cast<uintptr_t>(mpkbox_callback_stubs) +
                ((MPKBOX_MAX_CALLBACKS - 1) << MPKBOX_CB_STUB_SHIFT);
  absl::Status s = box->Call(+[] {
    reinterpret_cast<void (*)()>(stub_address)();
  });
  EXPECT_TRUE(ContainedAsForgery(box.get(), s)) << s;
}

int HostOnly() { return 1; }

TEST(GateAttackTest, CallbackOfAnotherCompartmentIsRefused) {
  auto a = MakeBox({.name = "a"});
  auto b = MakeBox({.name = "b"});
  auto cb = b->RegisterCallback(&HostOnly);
  ASSERT_TRUE(cb.ok());
  stub_address = reinterpret_cast<uintptr_t>(cb->get());
  EXPECT_EQ(Value(b->Call(+[] {
              return reinterpret_cast<int (*)()>(stub_address)();
            })),
            1);
  absl::Status s = a->Call(+[] {
                     return reinterpret_cast<int (*)()>(stub_address)();
                   }).status();
  EXPECT_TRUE(ContainedAsForgery(a.get(), s)) << s;
  EXPECT_EQ(Value(b->Call(+[] {
              return reinterpret_cast<int (*)()>(stub_address)();
            })),
            1);  // b is unaffected
}

extern "C" void mpkbox_gate_enter();

TEST(GateAttackTest, CallingTheGateEntryFromInsideFaults) {
  // The gate's first writes go to trusted memory: with compartment rights
  // they fault, before any PKRU changes.
  auto box = MakeBox({.name = "reentry"});
  absl::Status s = box->Call(+[] { mpkbox_gate_enter(); });
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  ASSERT_NE(box->last_fault(), nullptr);
  EXPECT_EQ(box->last_fault()->code, SEGV_PKUERR);
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
}

TEST(GateAttackTest, EnteringLeaksNoHostRegisterAndRestoresCalleeSaved) {
  auto box = MakeBox({.name = "probe"});
  // Junk in every callee-saved register the compiler lets us pin.
  register uint64_t rbx asm("rbx") = 0x1111111111111111;
  register uint64_t r12 asm("r12") = 0x1212121212121212;
  register uint64_t r13 asm("r13") = 0x1313131313131313;
  register uint64_t r14 asm("r14") = 0x1414141414141414;
  register uint64_t r15 asm("r15") = 0x1515151515151515;
  asm volatile("" : "+r"(rbx), "+r"(r12), "+r"(r13), "+r"(r14), "+r"(r15));
  auto leaked = box->Call(&mpkbox_test_probe_regs, 0);
  asm volatile("" : "+r"(rbx), "+r"(r12), "+r"(r13), "+r"(r14), "+r"(r15));
  const uint64_t after[] = {rbx, r12, r13, r14, r15};
  EXPECT_EQ(Value(leaked), 0u);
  EXPECT_EQ(after[0], 0x1111111111111111u);
  EXPECT_EQ(after[1], 0x1212121212121212u);
  EXPECT_EQ(after[2], 0x1313131313131313u);
  EXPECT_EQ(after[3], 0x1414141414141414u);
  EXPECT_EQ(after[4], 0x1515151515151515u);
}

TEST(GateAttackTest, ControlProbeSeesRegistersWithoutTheGate) {
  register uint64_t r12 asm("r12") = 0x1212121212121212;
  asm volatile("" : "+r"(r12));
  uint64_t leaked;
  // Called directly, the probe sees r12 (and clobbers it: restore after).
  asm volatile(
      "push %%r12\n"
      "xor %%edi, %%edi\n"
      "call mpkbox_test_probe_regs\n"
      "pop %%r12\n"
      : "=a"(leaked), "+r"(r12)
      :
      : "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r13",
        "r14", "r15", "xmm0", "memory");
  const uint64_t seen = leaked;
  EXPECT_NE(seen, 0u);
}

TEST(GateAttackTest, JumpToReturnPathWithHostValueOnlyReturns) {
  // EAX = 0 at the return path's WRPKRU is the legitimate value: it must do
  // nothing more than return from the call, on the host's own stack.
  std::vector<uintptr_t> sites = GateWrpkruSites();
  auto box = MakeBox({.name = "early-return"});
  ASSERT_GE(sites.size(), 2u);
  AimAt(sites[1], 0);  // the landing, after the call's own WRPKRU
  absl::Status s = box->Call(&AttackFromInside);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(internal::ReadPkru(), 0u);
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
  EXPECT_EQ(Value(box->Call(+[] { return 5; })), 5);
}

// The checks after the gate's WRPKRUs start from hints loaded before them
// (docs/INTERNALS.md): compartment code that jumps past those loads chooses
// the hints, and they must change nothing. Were a hint trusted, each attack
// below would be the bare WRPKRU of ControlBareWrpkruOpensHostMemory: the
// payload would run with host rights and exit kEscaped.
TEST(GateAttackDeathTest, ForgedSelectorPageHintAtTheEntryWrpkruIsContained) {
  std::vector<uintptr_t> sites = GateWrpkruSites();
  ASSERT_GE(sites.size(), 1u);
  auto box = MakeBox({.name = "entry-hint"});
  // A fake SelectorPage, in compartment memory, whose current_pkru is the
  // forged EAX: 0, every key open.
  absl::StatusOr<void*> fake = box->Allocate(MPKBOX_PAGE_SIZE, 64);
  ASSERT_TRUE(fake.ok());
  memset(*fake, 0, MPKBOX_PAGE_SIZE);
  AimAt(sites[0], 0);  // the call's WRPKRU into the compartment
  attack_regs.r14 = reinterpret_cast<uint64_t>(*fake);  // its hint
  attack_regs.r13 = ::mpkbox::testing::kOwnStack;  // the stack it would switch to, writable
  EXPECT_EXIT(
      {
        absl::Status s = box->Call(&AttackFromInside);
        _exit(ContainedAsForgery(box.get(), s) ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_EQ(mpkbox_test_host_secret, kHostSecret);
}

TEST(GateAttackDeathTest, ForgedFrameHintAtTheLandingOnlyReturns) {
  std::vector<uintptr_t> sites = GateWrpkruSites();
  ASSERT_GE(sites.size(), 2u);
  auto box = MakeBox({.name = "landing-hint"});
  ASSERT_TRUE(box->Call(+[] {}).ok());  // this thread's SelectorPage exists
  // A fake call frame in compartment memory: host rsp on a stack beside it,
  // return address the payload, control words the defaults.
  absl::StatusOr<void*> mem = box->Allocate(1024, 64);
  ASSERT_TRUE(mem.ok());
  auto* frame = static_cast<uint8_t*>(*mem);
  memset(frame, 0, 1024);
  const uint64_t kind = MPKBOX_FRAME_CALL;
  const uint64_t stack = reinterpret_cast<uint64_t>(frame) + 512;
  const uint64_t payload = ::mpkbox::testing::PayloadAddress();
  const uint32_t mxcsr = 0x1f80;
  const uint16_t fcw = 0x37f;
  memcpy(frame + MPKBOX_FR_KIND, &kind, 8);
  memcpy(frame + MPKBOX_FR_SP, &stack, 8);
  memcpy(frame + MPKBOX_FR_RET, &payload, 8);
  memcpy(frame + MPKBOX_FR_MXCSR, &mxcsr, 4);
  memcpy(frame + MPKBOX_FR_FCW, &fcw, 2);
  AimAt(sites[1], 0);  // the landing's WRPKRU, with the legitimate EAX
  // The real SelectorPage (compartments can read TLS) and the fake frame.
  attack_regs.rsi = reinterpret_cast<uint64_t>(mpkbox_tls_thread);
  attack_regs.rdi = reinterpret_cast<uint64_t>(frame);
  EXPECT_EXIT(
      {
        absl::Status s = box->Call(&AttackFromInside);
        _exit(s.ok() && internal::ReadPkru() == 0 &&
                      mpkbox_test_host_secret == kHostSecret
                  ? 0
                  : 1);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_EQ(Value(box->Call(+[] { return 5; })), 5);
}

}  // namespace
}  // namespace mpkbox

// State that compartment code sets must not reach the host.
namespace mpkbox {
namespace {

uint32_t ReadMxcsr() {
  uint32_t v;
  asm volatile("stmxcsr %0" : "=m"(v));
  return v;
}
uint16_t ReadFcw() {
  uint16_t v;
  asm volatile("fnstcw %0" : "=m"(v));
  return v;
}
void UnmaskEverything() {
  uint32_t mxcsr = 0;  // every SSE exception unmasked, round to nearest
  uint16_t fcw = 0x0c00;  // x87: round toward zero, exceptions unmasked
  asm volatile("ldmxcsr %0\n fldcw %1" : : "m"(mxcsr), "m"(fcw));
}
uint32_t mxcsr_in_callback;
void RecordMxcsr() { mxcsr_in_callback = ReadMxcsr(); }
uint32_t UnmaskThenCallBack(void (*cb)()) {
  UnmaskEverything();
  cb();
  return ReadMxcsr();  // the compartment's own, back after the callback
}

TEST(GateStateTest, ControlWordsComeBackToTheHost) {
  auto box = MakeBox({.name = "fpenv"});
  const uint32_t mxcsr = ReadMxcsr();
  const uint16_t fcw = ReadFcw();
  ASSERT_TRUE(box->Call(&UnmaskEverything).ok());
  EXPECT_EQ(ReadMxcsr(), mxcsr);
  EXPECT_EQ(ReadFcw(), fcw);
  volatile double zero = 0;
  EXPECT_TRUE(std::isinf(1.0 / zero));  // no SIGFPE: still masked
  auto cb = box->RegisterCallback(&RecordMxcsr);
  ASSERT_TRUE(cb.ok());
  EXPECT_EQ(Value(box->Call(&UnmaskThenCallBack, cb->get())), 0u);
  // The host ran with its own control bits (the low six are sticky status
  // flags: the division above set one).
  EXPECT_EQ(mxcsr_in_callback & ~0x3fu, mxcsr & ~0x3fu);
  EXPECT_EQ(ReadMxcsr() & ~0x3fu, mxcsr & ~0x3fu);
}

extern "C" char mpkbox_gate_exception_pad[];

TEST(GateStateTest, AlignmentCheckFlagNeverReachesTrustedCode) {
  auto box = MakeBox({.name = "ac"});
  // Set AC, then enter the exception pad, which runs C++ with host rights.
  absl::Status s = box->Call(+[] {
    asm volatile(
        "pushfq\n orl $0x40000, (%%rsp)\n popfq\n"
        "jmp *%0\n" ::"r"(reinterpret_cast<uintptr_t>(mpkbox_gate_exception_pad))
        : "memory");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  uint64_t flags;
  asm volatile("pushfq\n pop %0" : "=r"(flags));
  EXPECT_EQ(flags & 0x40400, 0u);  // no AC, no DF
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_TRUE(box->Call(+[] {}).ok());
}

int Nothing() { return 1; }

TEST(GateStateTest, CallbackFromABogusStackIsContained) {
  auto box = MakeBox({.name = "bogus-rsp"});
  auto cb = box->RegisterCallback(&Nothing);
  ASSERT_TRUE(cb.ok());
  stub_address = reinterpret_cast<uintptr_t>(cb->get());
  absl::Status s = box->Call(+[] {
    asm volatile("mov $0x10000, %%rsp\n jmp *%0\n" ::"r"(stub_address)
                 : "memory");
  });
  EXPECT_TRUE(ContainedAsForgery(box.get(), s)) << s;
  EXPECT_EQ(internal::CurrentThreadBlock()->depth, 0u);
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(Value(box->Call(&Nothing)), 1);
}

}  // namespace
}  // namespace mpkbox
