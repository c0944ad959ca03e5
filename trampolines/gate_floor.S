// Floor models of a call gate, for bench/gate_bench.cc only (never linked
// into libmpkbox; the one gate is gate.S). Each runs the empty function
// mpkbox_floor_target with PKRU = edi and returns with PKRU = esi, adding
// one layer of what a PKU gate must do, so the benchmark can show what each
// layer costs next to a WRPKRU on this CPU:
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
  movl %edi, %eax
  xorl %ecx, %ecx
  xorl %edx, %edx
  wrpkru
  cmpl %edi, %eax
  jne mpkbox_floor_trap
  call mpkbox_floor_target
  movl %esi, %eax
  xorl %ecx, %ecx
  xorl %edx, %edx
  wrpkru
  cmpl %esi, %eax
  jne mpkbox_floor_trap
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
  movl %edi, %eax
  xorl %ecx, %ecx
  xorl %edx, %edx
  wrpkru
  cmpl %edi, %eax
  jne mpkbox_floor_trap
  leaq floor_stack_top(%rip), %rsp
  call mpkbox_floor_target
  movl %esi, %eax
  xorl %ecx, %ecx
  xorl %edx, %edx
  wrpkru
  cmpl %esi, %eax
  jne mpkbox_floor_trap
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
  pushq %rbp
  .cfi_adjust_cfa_offset 8
  .cfi_rel_offset %rbp, 0
  pushq %rbx
  .cfi_adjust_cfa_offset 8
  .cfi_rel_offset %rbx, 0
  pushq %r12
  .cfi_adjust_cfa_offset 8
  .cfi_rel_offset %r12, 0
  pushq %r13
  .cfi_adjust_cfa_offset 8
  .cfi_rel_offset %r13, 0
  pushq %r14
  .cfi_adjust_cfa_offset 8
  .cfi_rel_offset %r14, 0
  pushq %r15
  .cfi_adjust_cfa_offset 8
  .cfi_rel_offset %r15, 0
  leaq floor_block(%rip), %r10
  movq %rbx, 0(%r10)
  movq %rbp, 8(%r10)
  movq %r12, 16(%r10)
  movq %r13, 24(%r10)
  movq %r14, 32(%r10)
  movq %r15, 40(%r10)
  movq %rsp, 48(%r10)
  movq 48(%rsp), %r11
  movq %r11, 56(%r10)
  movl %edi, 64(%r10)                       // the values the checks expect
  movl %esi, 68(%r10)
  movq %rsp, %rbp
  .cfi_def_cfa_register %rbp
  movl %edi, %eax
  xorl %ecx, %ecx
  xorl %edx, %edx
  wrpkru
  cmpl floor_block+64(%rip), %eax
  jne mpkbox_floor_trap
  leaq floor_stack_top(%rip), %rsp
  xorl %ebx, %ebx
  xorl %r10d, %r10d
  xorl %r11d, %r11d
  xorl %r12d, %r12d
  xorl %r13d, %r13d
  xorl %r14d, %r14d
  xorl %r15d, %r15d
  pxor %xmm8, %xmm8
  pxor %xmm9, %xmm9
  pxor %xmm10, %xmm10
  pxor %xmm11, %xmm11
  pxor %xmm12, %xmm12
  pxor %xmm13, %xmm13
  pxor %xmm14, %xmm14
  pxor %xmm15, %xmm15
  call mpkbox_floor_target
  movl %esi, %eax
  xorl %ecx, %ecx
  xorl %edx, %edx
  wrpkru
  cmpl floor_block+68(%rip), %eax
  jne mpkbox_floor_trap
  leaq floor_block(%rip), %r10
  movq 48(%r10), %rsp
  .cfi_def_cfa_register %rsp
  movq 56(%r10), %r11
  movq %r11, 48(%rsp)
  movq 0(%r10), %rbx
  movq 8(%r10), %rbp
  movq 16(%r10), %r12
  movq 24(%r10), %r13
  movq 32(%r10), %r14
  movq 40(%r10), %r15
  .cfi_same_value %rbx
  .cfi_same_value %rbp
  .cfi_same_value %r12
  .cfi_same_value %r13
  .cfi_same_value %r14
  .cfi_same_value %r15
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
floor_block:
  .skip 128
  .p2align 12
floor_stack:
  .skip 16384
floor_stack_top:

  .section .note.GNU-stack, "", @progbits
