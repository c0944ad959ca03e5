// Attacks on the signal machinery (DESIGN.md 5c and 6, item 12), done from
// compartment code with real jumps, as an attacker would. One binary per
// class:
// - signal_attack_entry_test.cc: jumps to the signal entry with forged
//   registers and a fake ucontext, straight to its WRPKRU with EAX = 0, to
//   every byte of the entry and of the resume stub, and into the gate's
//   exception pads;
// - signal_attack_replay_test.cc: replays of a real kernel frame left on the
//   trusted signal stack, jumps that reuse what earlier frames left there,
//   rsp pointed into the trusted signal stack before a fault, and a signal
//   handler of the compartment's own;
// - signal_attack_storm_test.cc: the resume stub restores every register,
//   flag, vector and red-zone byte of compartment code interrupted thousands
//   of times by host signals;
// - signal_attack_flags_test.cc: RFLAGS (DF, AC, TF) a compartment leaves
//   for host code;
// - signal_attack_edge_test.cc: signals at the edges of the gate's windows,
//   and several delivered at once.
// Each attack must end as kAborted (a forgery where the design says so), the
// host's memory unchanged, the process alive and the compartment usable after
// Reset(). Attacks that could escape run in a child process.
//
// This file: what those binaries share (the forged jump itself and its
// payload are in test_util.h).
#ifndef MPKBOX_TESTS_SIGNAL_ATTACK_UTIL_H_
#define MPKBOX_TESTS_SIGNAL_ATTACK_UTIL_H_

#include <gtest/gtest.h>

#include <cstdint>

#include "absl/status/status.h"
#include "mpkbox/mpkbox.h"

extern "C" {
// The trampolines' symbols are hidden but linkable: the library is static.
extern char mpkbox_signal_begin[], mpkbox_signal_end[];
extern char mpkbox_signal_entry[], mpkbox_resume_stub[];
extern char mpkbox_gate_exception_pad[], mpkbox_callback_exception_pad[];
}

namespace mpkbox::signal_attack {

// The WRPKRU of the signal entry: the first one after mpkbox_signal_begin.
uintptr_t EntryWrpkru();

// For a child process: says what the call returned, then exits with `code`.
[[noreturn]] void ExitAfter(int code, const absl::Status& s);

// After Reset the compartment runs code again and the host has its rights.
bool UsableAfterReset(Compartment* box);

struct SignalStack {
  uintptr_t lo = 0, hi = 0;
};
SignalStack ThisThreadSignalStack();

// Enters a compartment once so that this thread has its trusted signal stack.
void EnterOnce();

class SignalAttackTest : public ::testing::Test {
 protected:
  void SetUp() override;
};
using SignalAttackDeathTest = SignalAttackTest;

}  // namespace mpkbox::signal_attack

#endif  // MPKBOX_TESTS_SIGNAL_ATTACK_UTIL_H_
