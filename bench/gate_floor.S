// Floor models of a call gate, for bench/gate_bench.cc only (never linked
// into libmpkbox; the one gate is trampolines/gate.S). Each runs the empty
// function mpkbox_floor_target with PKRU = edi and returns with PKRU = esi,
// adding one layer of what a PKU gate must do, so the benchmark can show
// what each layer costs next to a WRPKRU on this CPU:
//
//   mpkbox_floor_call     the pair, a call and an ERIM-style check after each
//                         WRPKRU against a register: the least any gate does.
//   mpkbox_floor_switch   + a switch to another stack and back.
//   mpkbox_floor_trusted  + what issue 2 requires on top: callee-saved
//                         registers pushed and copied to a trusted block,
//                         host rsp and return address kept there, registers
//                         cleared on entry, each check against memory.
//
// The models trust their callers (the check values come in registers) and
// run no untrusted code: they are measuring tools, not gates.
// floor_trusted keeps host state with the gate's own macros
// (trampolines/pkru.inc), so it prices what the gate runs.

#include "trampolines/pkru.inc"

// PKRU := \reg, then ERIM's check of EAX against \check.
.macro FLOOR_WRPKRU reg, check
  movl \reg, %eax
  xorl %ecx, %ecx
  xorl %edx, %edx
  wrpkru
  cmpl \check, %eax
  jne mpkbox_floor_trap
.endm

  .text

  .type mpkbox_floor_target, @function
  .p2align 4
mpkbox_floor_target:
  .cfi_startproc
  ret
  .cfi_endproc
  .size mpkbox_floor_target, . - mpkbox_floor_target

  .type mpkbox_floor_trap, @function
  .p2align 4
mpkbox_floor_trap:
  .cfi_startproc
  .cfi_undefined rip
  ud2
  .cfi_endproc
  .size mpkbox_floor_trap, . - mpkbox_floor_trap

  .globl mpkbox_floor_call
  .hidden mpkbox_floor_call
  .type mpkbox_floor_call, @function
  .p2align 4
mpkbox_floor_call:
  .cfi_startproc
  subq $8, %rsp
  .cfi_adjust_cfa_offset 8
  FLOOR_WRPKRU %edi, %edi
  call mpkbox_floor_target
  FLOOR_WRPKRU %esi, %esi
  addq $8, %rsp
  .cfi_adjust_cfa_offset -8
  ret
  .cfi_endproc
  .size mpkbox_floor_call, . - mpkbox_floor_call

  .globl mpkbox_floor_switch
  .hidden mpkbox_floor_switch
  .type mpkbox_floor_switch, @function
  .p2align 4
mpkbox_floor_switch:
  .cfi_startproc
  movq %rsp, %r8                            // the target leaves r8 alone
  .cfi_def_cfa_register %r8
  FLOOR_WRPKRU %edi, %edi
  leaq floor_stack_top(%rip), %rsp
  call mpkbox_floor_target
  FLOOR_WRPKRU %esi, %esi
  movq %r8, %rsp
  .cfi_def_cfa_register %rsp
  ret
  .cfi_endproc
  .size mpkbox_floor_switch, . - mpkbox_floor_switch

  .globl mpkbox_floor_trusted
  .hidden mpkbox_floor_trusted
  .type mpkbox_floor_trusted, @function
  .p2align 4
mpkbox_floor_trusted:
  .cfi_startproc
  PUSH_CALLEE_SAVED
  leaq floor_block(%rip), %r10
  SAVE_CALLEE_SAVED %r10
  movq %rsp, MPKBOX_FR_SP(%r10)
  movq 48(%rsp), %r11
  movq %r11, MPKBOX_FR_RET(%r10)
  movl %edi, MPKBOX_FR_SCRATCH(%r10)        // the values the checks expect
  movl %esi, MPKBOX_FR_SCRATCH + 4(%r10)
  movq %rsp, %rbp
  .cfi_def_cfa_register %rbp
  FLOOR_WRPKRU %edi, floor_block + MPKBOX_FR_SCRATCH(%rip)
  leaq floor_stack_top(%rip), %rsp
  xorl %ebx, %ebx
  xorl %r10d, %r10d
  xorl %r11d, %r11d
  xorl %r12d, %r12d
  xorl %r13d, %r13d
  xorl %r14d, %r14d
  xorl %r15d, %r15d
  .irp r, 8, 9, 10, 11, 12, 13, 14, 15
  pxor %xmm\r, %xmm\r
  .endr
  call mpkbox_floor_target
  FLOOR_WRPKRU %esi, floor_block + MPKBOX_FR_SCRATCH + 4(%rip)
  leaq floor_block(%rip), %r10
  movq MPKBOX_FR_SP(%r10), %rsp
  .cfi_def_cfa_register %rsp
  movq MPKBOX_FR_RET(%r10), %r11
  movq %r11, 48(%rsp)
  RESTORE_CALLEE_SAVED %r10
  addq $48, %rsp
  .cfi_adjust_cfa_offset -48
  xorl %r8d, %r8d
  xorl %r9d, %r9d
  xorl %r10d, %r10d
  xorl %r11d, %r11d
  ret
  .cfi_endproc
  .size mpkbox_floor_trusted, . - mpkbox_floor_trusted

  .bss
  .p2align 6
floor_block:                                // stands in for a Frame
  .skip 1 << MPKBOX_FRAME_SHIFT
  .p2align 12
floor_stack:
  .skip 16384
floor_stack_top:

  .section .note.GNU-stack, "", @progbits
