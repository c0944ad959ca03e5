// The runtime's only privileged instructions outside the gate and the signal
// entry: opening every key for host code, and running a host XRSTOR that
// gadget_guard.cc replaced with a trap. Both are checked like the gate's
// (docs/INTERNALS.md "Stray privileged instructions"): after the instruction
// the selector page must say the host runs (current_domain 0), which
// compartment code cannot write, so a jump here from a compartment traps.

#include "trampolines/pkru.inc"

#define MPKBOX_XFEATURE_PKRU 0x200  // XSAVE state component 9

  .text
  .globl mpkbox_host_rights_begin
  .hidden mpkbox_host_rights_begin
mpkbox_host_rights_begin:

// void mpkbox_open_all_keys(void): PKRU := 0, for a thread outside every
// compartment (libc's pkey_set would be a stray WRPKRU mpkbox runs).
  .globl mpkbox_open_all_keys
  .hidden mpkbox_open_all_keys
  .type mpkbox_open_all_keys, @function
  .p2align 4
mpkbox_open_all_keys:
  .cfi_startproc
  WRPKRU_HOST
  LOAD_THREAD %rax
  testq %rax, %rax
  jz 1f                                     // never entered a compartment
  cmpq $0, MPKBOX_SEL_CURRENT_DOMAIN(%rax)
  jne mpkbox_gate_trap
1:
  ret
  .cfi_endproc
  .size mpkbox_open_all_keys, . - mpkbox_open_all_keys

// void mpkbox_xrstor_into_frame(void* frame_xsave, uint64_t frame_mask,
//                               const void* area, uint64_t area_mask,
//                               bool wide)
// Called by the signal dispatcher (host rights, current_domain 0): does what
// `xrstor area` (xrstor64 if wide) with mask area_mask would have done to the
// interrupted thread, by loading the frame's state, the area over it, and
// saving the result back into the frame (the 64-bit format the kernel
// uses), which sigreturn loads. PKRU is never part of either mask. The
// dispatcher's own MXCSR and x87 control word come back.
  .globl mpkbox_xrstor_into_frame
  .hidden mpkbox_xrstor_into_frame
  .type mpkbox_xrstor_into_frame, @function
  .p2align 4
mpkbox_xrstor_into_frame:
  .cfi_startproc
  subq $24, %rsp
  .cfi_adjust_cfa_offset 24
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rdx, %r11                           // the area
  movq %rsi, %r10                           // the frame's mask
  andq $~MPKBOX_XFEATURE_PKRU, %r10
  movl %r10d, %eax
  movq %r10, %rdx
  shrq $32, %rdx
  xrstor64 (%rdi)
  andq $~MPKBOX_XFEATURE_PKRU, %rcx
  movl %ecx, %eax
  movq %rcx, %rdx
  shrq $32, %rdx
  testb %r8b, %r8b
  jnz 2f
  xrstor (%r11)
  jmp 3f
2:
  xrstor64 (%r11)
3:
  // A jump to any XRSTOR here with PKRU in the mask ends here.
  xorl %ecx, %ecx
  rdpkru
  testl %eax, %eax
  jnz mpkbox_gate_trap
  LOAD_THREAD %rax
  testq %rax, %rax
  jz 4f                                     // never entered a compartment
  cmpq $0, MPKBOX_SEL_CURRENT_DOMAIN(%rax)
  jne mpkbox_gate_trap
4:
  movl %r10d, %eax
  movq %r10, %rdx
  shrq $32, %rdx
  xsave64 (%rdi)
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $24, %rsp
  .cfi_adjust_cfa_offset -24
  ret
  .cfi_endproc
  .size mpkbox_xrstor_into_frame, . - mpkbox_xrstor_into_frame

  .globl mpkbox_host_rights_end
  .hidden mpkbox_host_rights_end
mpkbox_host_rights_end:

  .section .note.GNU-stack, "", @progbits
