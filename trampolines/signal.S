// The signal entry and the resume stub (docs/DESIGN.md 5c).
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
// mpkbox_resume_stub is how a handler returns into compartment code: the
// handler sets ALLOW and rt_sigreturns here with host rights; the stub sets
// BLOCK, takes the compartment's PKRU (checked), restores the registers and
// jumps back. mpkbox_resume_trusted does the same for trusted gate code that
// was on its way into a compartment with BLOCK already set.

#include "trampolines/pkru.inc"

// Offsets in the kernel's struct ucontext (uc_mcontext.gregs at 40).
#define UC_LINK 8
#define UC_RSP (40 + 15 * 8)
#define UC_RIP (40 + 16 * 8)
#define NSIG_CHAIN 64  // at most this many frames built together

// The registers both resume stubs take from a ResumeState at %rcx.
.macro RESTORE_SAVED_REGISTERS
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
.endm

// The last registers, flags and rip, from five words at \base(%rcx) laid out
// as rax, rcx, rdx, rip, rflags; the jump goes through a slot below the red
// zone of the resumed stack, and `ret $128` leaves rsp as it was.
.macro JUMP_TO_SAVED base
  leaq -136(%rsp), %rsp
  movq \base + 24(%rcx), %rax
  movq %rax, (%rsp)
  pushq \base + 32(%rcx)
  popfq
  movq \base(%rcx), %rax
  movq \base + 16(%rcx), %rdx
  movq \base + 8(%rcx), %rcx
  ret $128
.endm

// Compartment code may have reset FS base with a segment load (a null
// selector clears it on Intel; any other gives the descriptor's base, 0).
// Then TLS is unreachable: find the thread by the identity descriptor the
// kernel keeps for it (runtime/thread_identity.h), put its FS base back with
// arch_prctl and tell the dispatcher, which ends the call. Host rights;
// keeps rdi, rsi, rdx, r8 and r10; touches no stack (frames built together
// must find the entry's rsp where the kernel left it).
.macro REPAIR_FS
  cmpb $0, mpkbox_fs_repair(%rip)
  je 111f
  rdfsbase %rax
  testq %rax, %rax
  jnz 111f
  movl $MPKBOX_IDENTITY_SELECTOR, %ecx
  lsl %ecx, %ecx
  jnz mpkbox_gate_trap                      // a thread without identity
  cmpl $MPKBOX_MAX_THREAD_IDS, %ecx
  jae mpkbox_gate_trap
  movq mpkbox_thread_table(%rip), %rax
  movq (%rax, %rcx, 8), %r9                 // r9 = SelectorPage
  testq %r9, %r9
  jz mpkbox_gate_trap
  // The kernel put this frame on the running thread's signal stack: that
  // thread must be the one the descriptor names.
  cmpq MPKBOX_PAGE_SIZE + MPKBOX_TB_SIGSTACK_LO(%r9), %rsp
  jb mpkbox_gate_trap
  cmpq MPKBOX_PAGE_SIZE + MPKBOX_TB_SIGSTACK_HI(%r9), %rsp
  jae mpkbox_gate_trap
  movb $MPKBOX_SELECTOR_ALLOW, MPKBOX_SEL_SELECTOR(%r9)  // for the syscall
  movq %rsi, %rdx                           // rdx is kept in r8
  movq MPKBOX_PAGE_SIZE + MPKBOX_TB_HOST_FS(%r9), %rsi
  movl $158, %eax                           // arch_prctl
  movl $0x1002, %edi                        // ARCH_SET_FS
  syscall
  testq %rax, %rax
  jnz mpkbox_gate_trap
  movq $1, MPKBOX_PAGE_SIZE + MPKBOX_TB_FS_REPAIRED(%r9)
  movq %rdx, %rsi
  movq %r8, %rdx
  movl %r10d, %edi
111:
.endm

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
  movl %edi, %r10d                          // the signal number
  movq %r8, %rdx
  REPAIR_FS
  LOAD_THREAD %rax
  testq %rax, %rax
  jz 2f                                     // no compartment ever ran here
  leaq MPKBOX_PAGE_SIZE(%rax), %rax         // rax = ThreadBlock
  cmpq $0, MPKBOX_TB_SIGSTACK_HI(%rax)
  je 2f                                     // set-up not done: none ran yet
  // The frame must lie on the trusted signal stack...
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
  // ...and, when no handler runs on this thread (the only time compartment
  // code can), exactly where the kernel puts a first frame (SS_AUTODISARM):
  // words left lower on the stack by earlier frames are no frame.
  cmpq $0, MPKBOX_TB_SIGNAL_NESTING(%rax)
  jne 1f
  movq MPKBOX_TB_SIGNAL_RSP(%rax), %rcx
  testq %rcx, %rcx
  jz 1f                                     // still learning it (thread set-up)
  leaq 8(%rsp), %r9                         // a kernel frame's own shape
  cmpq %r9, %rdx
  jne mpkbox_gate_trap
  movq MPKBOX_TB_SIGNAL_INFO(%rax), %r9
  addq %rdx, %r9
  cmpq %r9, %rsi
  jne mpkbox_gate_trap
  // Signals delivered together get frames built together, each below the
  // last, each interrupted at this entry with the frame above as its rsp:
  // walk up to the first frame. Every frame in the chain must be fresh.
  movq %rsp, %r9
  movl $NSIG_CHAIN, %r8d
  leaq mpkbox_signal_entry(%rip), %r11
3:
  cmpq $0, 8 + UC_LINK(%r9)
  jne mpkbox_gate_trap                      // dispatched before: a replay
  cmpq %rcx, %r9
  je 1f                                     // the first frame
  movq 8 + UC_RIP(%r9), %rdi                // interrupted in these checks?
  subq %r11, %rdi
  cmpq $mpkbox_signal_entry_checked - mpkbox_signal_entry, %rdi
  jae mpkbox_gate_trap
  movq 8 + UC_RSP(%r9), %r9
  cmpq MPKBOX_TB_SIGSTACK_LO(%rax), %r9
  jb mpkbox_gate_trap
  cmpq MPKBOX_TB_SIGSTACK_HI(%rax), %r9
  jae mpkbox_gate_trap
  decl %r8d
  jnz 3b
  jmp mpkbox_gate_trap
1:
  incq MPKBOX_TB_SIGNAL_NESTING(%rax)       // mpkbox_signal_restorer undoes it
  .globl mpkbox_signal_entry_checked
  .hidden mpkbox_signal_entry_checked
mpkbox_signal_entry_checked:
  movl %r10d, %edi                          // the signal number
  // The kernel clears DF and TF for a handler, not AC.
  pushq $0x202
  popfq
2:
  jmp mpkbox_signal_dispatch@PLT            // returns to the restorer
  .cfi_endproc
  .size mpkbox_signal_entry, . - mpkbox_signal_entry

// Back into compartment code. Entered by rt_sigreturn with PKRU 0 and the
// selector at ALLOW. Restartable: a signal that interrupts it restarts it
// (the dispatcher sees the address), so it only reads the saved state.
  .globl mpkbox_resume_stub
  .hidden mpkbox_resume_stub
  .type mpkbox_resume_stub, @function
  .p2align 4
mpkbox_resume_stub:
  .cfi_startproc
  .cfi_undefined rip
  LOAD_THREAD %rax
  movq MPKBOX_TB_RESUME + MPKBOX_PAGE_SIZE(%rax), %rcx  // rcx = ResumeState
  movb $MPKBOX_SELECTOR_BLOCK, MPKBOX_SEL_SELECTOR(%rax)
  RESTORE_SAVED_REGISTERS
  movq MPKBOX_RS_RSP(%rcx), %rdx
  movl MPKBOX_SEL_CURRENT_PKRU(%rax), %eax
  movq %rdx, %rsp                           // the compartment's, not read yet
  WRPKRU_COMPARTMENT                        // leaves rcx = SelectorPage
  JUMP_TO_SAVED MPKBOX_SEL_RESUME_RAX        // its rip slot: compartment rights
  .cfi_endproc
  .size mpkbox_resume_stub, . - mpkbox_resume_stub

// Back into trusted gate code that had set the selector to BLOCK on its way
// into a compartment (its rsp is then the host's stack): sets BLOCK again
// and returns with host rights. Restartable like the stub above.
  .globl mpkbox_resume_trusted
  .hidden mpkbox_resume_trusted
  .type mpkbox_resume_trusted, @function
  .p2align 4
mpkbox_resume_trusted:
  .cfi_startproc
  .cfi_undefined rip
  LOAD_THREAD %rax
  movq MPKBOX_TB_RESUME_TRUSTED + MPKBOX_PAGE_SIZE(%rax), %rcx
  movb $MPKBOX_SELECTOR_BLOCK, MPKBOX_SEL_SELECTOR(%rax)
  RESTORE_SAVED_REGISTERS
  movq MPKBOX_RS_RSP(%rcx), %rsp
  JUMP_TO_SAVED MPKBOX_RS_RAX
  .globl mpkbox_resume_trusted_end
  .hidden mpkbox_resume_trusted_end
mpkbox_resume_trusted_end:
  .cfi_endproc
  .size mpkbox_resume_trusted, . - mpkbox_resume_trusted

// Every handler mpkbox installs returns here (SA_RESTORER). It blocks all
// signals (rt_sigreturn brings back the frame's mask), so no frame can be
// built between the end of the thread's handler nesting and the return.
  .globl mpkbox_signal_restorer
  .hidden mpkbox_signal_restorer
  .type mpkbox_signal_restorer, @function
  .p2align 4
mpkbox_signal_restorer:
  .cfi_startproc
  .cfi_undefined rip
  movl $14, %eax                            // rt_sigprocmask
  xorl %edi, %edi                           // SIG_BLOCK
  leaq every_signal(%rip), %rsi
  xorl %edx, %edx
  movl $8, %r10d
  syscall
  LOAD_THREAD %rax
  testq %rax, %rax
  jz 1f
  cmpq $0, MPKBOX_PAGE_SIZE + MPKBOX_TB_SIGNAL_NESTING(%rax)
  je 1f
  decq MPKBOX_PAGE_SIZE + MPKBOX_TB_SIGNAL_NESTING(%rax)
1:
  movl $15, %eax                            // rt_sigreturn
  syscall
  ud2
  .cfi_endproc
  .size mpkbox_signal_restorer, . - mpkbox_signal_restorer

  .section .rodata
  .p2align 3
every_signal:
  .quad -1
  .text

  .globl mpkbox_signal_end
  .hidden mpkbox_signal_end
mpkbox_signal_end:

  .section .note.GNU-stack, "", @progbits
