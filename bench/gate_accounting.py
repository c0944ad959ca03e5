#!/usr/bin/env python3
"""Prices each part of the gate that the trusted floor model does not do
(issue 16, item 4): builds gate_bench once per *removal probe* -- a copy of
trampolines/gate.S with one property's instructions cut out -- and runs
bench/gate_ratio.sh over the unchanged build and every probe, alternated.
A probe's ratio against the unchanged gate's is what that property costs.

The probes are measuring tools only: each one breaks a guarantee the gate
keeps (docs/INTERNALS.md, GateStateTest, gate_attack_test), so none may be
linked into anything but this measurement.

  bench/gate_accounting.py [--dir build-acct] [--runs 7] [--probes a,b]

Works on the committed tree (git archive HEAD into DIR/src); Release build,
ccache when installed. Each probe's edits must apply exactly, so a changed
gate.S makes this fail instead of measuring nothing.
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

FLAGS = [("""  pushfq
  testl $0x40500, (%rsp)                    // AC | DF | TF
  jz 2f
  andl $~0x40500, (%rsp)
  popfq
2:
""", "")]
CONTROL_WORDS = [("""  stmxcsr MPKBOX_FR_MXCSR(%r10)
  fnstcw MPKBOX_FR_FCW(%r10)
""", ""), ("  RESTORE_CONTROL_WORDS %rdi\n", "")]
# Past what the floor clears (xmm8-15): vzeroupper, zmm16-31, k0-7.
VECTOR = [("  CLEAR_VECTOR_STATE_FROM_XMM8\n\n  // Switch",
           "  .irp r, 8, 9, 10, 11, 12, 13, 14, 15\n"
           "  pxor %xmm\\r, %xmm\\r\n  .endr\n\n  // Switch")]
ZMM16 = [("  CLEAR_VECTOR_STATE_FROM_XMM8\n\n  // Switch",
          "  .irp r, 8, 9, 10, 11, 12, 13, 14, 15\n"
          "  pxor %xmm\\r, %xmm\\r\n  .endr\n"
          "  cmpb $0, mpkbox_ambient+MPKBOX_AMBIENT_VECTOR_LEVEL(%rip)\n"
          "  je 105f\n  vzeroupper\n"
          "  cmpb $2, mpkbox_ambient+MPKBOX_AMBIENT_VECTOR_LEVEL(%rip)\n"
          "  jne 105f\n"
          "  .irp k, 0, 1, 2, 3, 4, 5, 6, 7\n"
          "  kxorw %k\\k, %k\\k, %k\\k\n  .endr\n105:\n\n  // Switch")]
FRAME_KIND = [("  movq $MPKBOX_FRAME_CALL, MPKBOX_FR_KIND(%r10)\n", ""),
              ("""  cmpq $MPKBOX_FRAME_CALL, MPKBOX_FR_KIND(%rdi)
  jne mpkbox_gate_trap
""", "")]
NESTING = [("""  movq MPKBOX_SEL_CURRENT_PKRU(%rax), %r12
  movq %r12, MPKBOX_FR_PREV_PKRU(%r10)
  movq MPKBOX_SEL_CURRENT_DOMAIN(%rax), %r12
  movq %r12, MPKBOX_FR_PREV_DOMAIN(%r10)
""", ""), ("""  movq MPKBOX_FR_PREV_PKRU(%rdi), %rcx
  movq %rcx, MPKBOX_SEL_CURRENT_PKRU(%rsi)
  movq MPKBOX_FR_PREV_DOMAIN(%rdi), %rcx
  movq %rcx, MPKBOX_SEL_CURRENT_DOMAIN(%rsi)
""", """  movq $0, MPKBOX_SEL_CURRENT_PKRU(%rsi)
  movq $0, MPKBOX_SEL_CURRENT_DOMAIN(%rsi)
""")]
# The floor pushes too; priced for reference only.
PUSHES = [("  PUSH_CALLEE_SAVED\n",
           "  subq $48, %rsp\n  .cfi_adjust_cfa_offset 48\n")]

PROBES = {
    "no-flags": FLAGS,
    "no-control-words": CONTROL_WORDS,
    "no-vector-past-xmm8": VECTOR,
    "no-zmm16-31": ZMM16,
    "no-frame-kind": FRAME_KIND,
    "no-nesting-state": NESTING,
    "no-pushes": PUSHES,
    # Every part the floor lacks, the pushes kept: what is left is the
    # frame stack, the hints, the selector page and Call's C++ fast path.
    "no-properties": FLAGS + CONTROL_WORDS + VECTOR + FRAME_KIND + NESTING,
}


def run(cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="build-acct")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--probes", default=",".join(PROBES))
    args = ap.parse_args()
    probes = [p for p in args.probes.split(",") if p]
    for p in probes:
        if p not in PROBES:
            sys.exit(f"unknown probe {p}; known: {', '.join(PROBES)}")

    top = (ROOT / args.dir).resolve()
    src, build = top / "src", top / "build"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"],
                             check=True, capture_output=True).stdout
    run(["tar", "-x", "-C", str(src)], input=archive)
    gate = src / "trampolines" / "gate.S"
    pristine = gate.read_text()

    cfg = ["cmake", "-S", str(src), "-B", str(build),
           "-DCMAKE_BUILD_TYPE=Release", "-DMPKBOX_WERROR=ON"]
    if shutil.which("ccache"):
        cfg += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache",
                "-DCMAKE_C_COMPILER_LAUNCHER=ccache"]
    run(cfg, stdout=subprocess.DEVNULL)

    dirs = []
    for name in ["gate"] + probes:
        text = pristine
        for old, new in PROBES.get(name, []):
            if text.count(old) != 1:
                sys.exit(f"probe {name}: gate.S no longer has {old!r}")
            text = text.replace(old, new)
        gate.write_text(text)
        run(["cmake", "--build", str(build), "-j2", "--target", "gate_bench"],
            stdout=subprocess.DEVNULL)
        out = top / name / "bench"
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(build / "bench" / "gate_bench", out / "gate_bench")
        dirs.append(str(top / name))
    gate.write_text(pristine)

    env = dict(os.environ, RUNS=str(args.runs))
    run([str(ROOT / "bench" / "gate_ratio.sh")] + dirs, env=env)


if __name__ == "__main__":
    main()
