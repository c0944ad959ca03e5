// The signal entry and the resume stub (DESIGN.md 5c).
//
// mpkbox_signal_entry is the handler of every signal mpkbox installs. The
// kernel enters handlers with PKRU = init_pkru whatever the interrupted code
// had; the entry's first act is to check that (a jump here from compartment
// code has the compartment's PKRU) and write the host's PKRU, before any
// memory is read. A jump past that check, straight to the WRPKRU, is caught
// next: on a thread that runs compartments the kernel always writes the frame
// on the thread's trusted signal stack, so rsp and the ucontext must lie
// there (the dispatcher then refuses a frame it has seen before). Only then
// does any C++ run. The dispatcher decides where the thread goes.
//
// mpkbox_resume_stub is how a handler returns into compartment code, or into
// trusted code that had set the selector to BLOCK: the handler sets ALLOW and
// rt_sigreturns here with host rights; the stub sets BLOCK, takes the
// compartment's PKRU (checked), restores the registers and jumps back.

#include "trampolines/pkru.inc"

  .text
  .globl mpkbox_signal_begin
  .hidden mpkbox_signal_begin
mpkbox_signal_begin:

  .globl mpkbox_signal_entry
  .hidden mpkbox_signal_entry
  .type mpkbox_signal_entry, @function
  .p2align 4
mpkbox_signal_entry:
  .cfi_startproc
  movq %rdx, %r8                            // the ucontext
  xorl %ecx, %ecx
  rdpkru
  cmpl $MPKBOX_INIT_PKRU, %eax
  jne mpkbox_gate_trap                      // not entered by the kernel
  WRPKRU_HOST
  movq %r8, %rdx
  LOAD_THREAD %rax
  testq %rax, %rax
  jz 1f                                     // no compartment ever ran here
  leaq MPKBOX_PAGE_SIZE(%rax), %rax
  movq MPKBOX_TB_SIGSTACK_LO(%rax), %rcx
  cmpq %rcx, %rsp
  jb mpkbox_gate_trap
  cmpq %rcx, %rdx
  jb mpkbox_gate_trap
  movq MPKBOX_TB_SIGSTACK_HI(%rax), %rcx
  cmpq %rcx, %rsp
  jae mpkbox_gate_trap
  cmpq %rcx, %rdx
  jae mpkbox_gate_trap
1:
  jmp mpkbox_signal_dispatch@PLT            // returns to the restorer
  .cfi_endproc
  .size mpkbox_signal_entry, . - mpkbox_signal_entry

// Entered by rt_sigreturn with PKRU 0 and the selector at ALLOW. Restartable:
// a signal that interrupts it restarts it (the dispatcher sees the address),
// so it only reads the saved state.
  .globl mpkbox_resume_stub
  .hidden mpkbox_resume_stub
  .type mpkbox_resume_stub, @function
  .p2align 4
mpkbox_resume_stub:
  .cfi_startproc
  .cfi_undefined rip
  LOAD_THREAD %rax
  leaq MPKBOX_PAGE_SIZE(%rax), %rcx
  movq MPKBOX_TB_RESUME(%rcx), %rcx         // rcx = ResumeState
  movb $MPKBOX_SELECTOR_BLOCK, MPKBOX_SEL_SELECTOR(%rax)
  movq MPKBOX_RS_RBX(%rcx), %rbx
  movq MPKBOX_RS_RBP(%rcx), %rbp
  movq MPKBOX_RS_RSI(%rcx), %rsi
  movq MPKBOX_RS_RDI(%rcx), %rdi
  movq MPKBOX_RS_R8(%rcx), %r8
  movq MPKBOX_RS_R9(%rcx), %r9
  movq MPKBOX_RS_R10(%rcx), %r10
  movq MPKBOX_RS_R11(%rcx), %r11
  movq MPKBOX_RS_R12(%rcx), %r12
  movq MPKBOX_RS_R13(%rcx), %r13
  movq MPKBOX_RS_R14(%rcx), %r14
  movq MPKBOX_RS_R15(%rcx), %r15
  movq MPKBOX_RS_RSP(%rcx), %rsp
  leaq -136(%rsp), %rsp                     // below the red zone: the rip slot
  movq MPKBOX_RS_PKRU(%rcx), %rax
  testl %eax, %eax
  jz 1f                                     // trusted code: stays on PKRU 0
  WRPKRU_COMPARTMENT                        // leaves rcx = SelectorPage
  jmp 2f
1:
  LOAD_THREAD %rcx
2:
  movq MPKBOX_SEL_RESUME_RIP(%rcx), %rax    // written with the resumed rights
  movq %rax, (%rsp)
  pushq MPKBOX_SEL_RESUME_RFLAGS(%rcx)
  popfq
  movq MPKBOX_SEL_RESUME_RAX(%rcx), %rax
  movq MPKBOX_SEL_RESUME_RDX(%rcx), %rdx
  movq MPKBOX_SEL_RESUME_RCX(%rcx), %rcx
  ret $128
  .cfi_endproc
  .size mpkbox_resume_stub, . - mpkbox_resume_stub

  .globl mpkbox_signal_end
  .hidden mpkbox_signal_end
mpkbox_signal_end:

  .section .note.GNU-stack, "", @progbits
