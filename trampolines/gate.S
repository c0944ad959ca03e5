// The call gate: host to compartment (mpkbox_gate_enter) and compartment to
// host (mpkbox_callback_stubs -> callback entry). One implementation; every
// PKRU write in it is one of the two checked macros of pkru.inc.
//
// Rules this file keeps (see docs/INTERNALS.md):
// - Every WRPKRU is followed by a check that traps unless EAX holds the one
//   value trusted state allows: 0 for the host, the selector page's
//   current_pkru for a compartment. A jump to a WRPKRU with a forged EAX traps.
// - Selector == BLOCK whenever PKRU is a compartment's (docs/DESIGN.md 5c).
// - With trusted rights, control never flows through memory a compartment
//   can write: host rsp, return address and callee-saved registers come from
//   the trusted ThreadBlock, not from any stack.
// - Entering a compartment clears every register but the arguments.

#include "trampolines/pkru.inc"

  .text
  .globl mpkbox_gate_begin
  .hidden mpkbox_gate_begin
mpkbox_gate_begin:

// A check after a WRPKRU failed, or the frame stack is not what the gate
// expects: someone jumped into the gate. Nothing after this may run.
  .globl mpkbox_gate_trap
  .hidden mpkbox_gate_trap
  .type mpkbox_gate_trap, @function
  .p2align 4
mpkbox_gate_trap:
  .cfi_startproc
  .cfi_undefined rip
  ud2
  .cfi_endproc
  .size mpkbox_gate_trap, . - mpkbox_gate_trap

// Host -> compartment. Called with the target's own signature (arguments in
// rdi..r9 and xmm0..7); the function and CallContext wait in
// ThreadBlock::pending_fn and pending_ctx. Returns the callee's rax, rdx,
// xmm0, xmm1.
  .globl mpkbox_gate_enter
  .hidden mpkbox_gate_enter
  .type mpkbox_gate_enter, @function
  .p2align 4
mpkbox_gate_enter:
  .cfi_startproc
  // The caller's frame lives on another stack, above or below this one:
  // as for a signal frame, unwinders must not require stack order.
  .cfi_signal_frame
  .cfi_personality 0x9b, DW.ref.mpkbox_gate_personality
  PUSH_CALLEE_SAVED
  // CFA = rsp + 56. The pushes serve unwinders; the trusted copies below are
  // what the return path restores.

  LOAD_THREAD %rax                          // rax = SelectorPage
  leaq MPKBOX_PAGE_SIZE(%rax), %r11       // r11 = ThreadBlock
  movq MPKBOX_TB_DEPTH(%r11), %r10
  cmpq $MPKBOX_MAX_DEPTH, %r10
  jae mpkbox_gate_trap
  incq MPKBOX_TB_DEPTH(%r11)
  shlq $MPKBOX_FRAME_SHIFT, %r10
  leaq MPKBOX_TB_FRAMES(%r11, %r10), %r10   // r10 = new Frame
  movq %r10, MPKBOX_SEL_LANDING_HINT(%rax)
  SAVE_CALLEE_SAVED %r10
  stmxcsr MPKBOX_FR_MXCSR(%r10)
  fnstcw MPKBOX_FR_FCW(%r10)
  movq $MPKBOX_FRAME_CALL, MPKBOX_FR_KIND(%r10)
  movq %rsp, MPKBOX_FR_SP(%r10)
  movq 48(%rsp), %r12
  movq %r12, MPKBOX_FR_RET(%r10)
  movq MPKBOX_SEL_CURRENT_PKRU(%rax), %r12
  movq %r12, MPKBOX_FR_PREV_PKRU(%r10)
  movq MPKBOX_SEL_CURRENT_DOMAIN(%rax), %r12
  movq %r12, MPKBOX_FR_PREV_DOMAIN(%r10)
  movq MPKBOX_TB_PENDING_CTX(%r11), %rbx    // rbx = CallContext
  movq %rbx, MPKBOX_FR_CTX(%r10)
  movq MPKBOX_TB_PENDING_FN(%r11), %r11     // r11 = target function

  // Host vector state is cleared here, before the WRPKRU: these run in
  // parallel with the stores above, and nothing after them uses it.
  CLEAR_VECTOR_STATE_FROM_XMM8

  // Switch domain in the selector page: BLOCK before the compartment's PKRU.
  movq MPKBOX_CTX_PKRU(%rbx), %r12
  movq %r12, MPKBOX_SEL_CURRENT_PKRU(%rax)
  movq MPKBOX_CTX_DOMAIN(%rbx), %r13
  movq %r13, MPKBOX_SEL_CURRENT_DOMAIN(%rax)
  .globl mpkbox_gate_enter_blocked
  .hidden mpkbox_gate_enter_blocked
mpkbox_gate_enter_blocked:
  movb $MPKBOX_SELECTOR_BLOCK, MPKBOX_SEL_SELECTOR(%rax)

  movq %rsp, %rbp
  .cfi_def_cfa_register %rbp
  movq MPKBOX_CTX_TOP(%rbx), %r13           // the compartment's stack
  movq %rcx, %r10                           // WRPKRU needs ecx = edx = 0
  movq %rdx, %rbx
  movq %rax, %r14                           // hints the check's SelectorPage
  movl %r12d, %eax
  .globl mpkbox_gate_enter_blocked_end
  .hidden mpkbox_gate_enter_blocked_end
mpkbox_gate_enter_blocked_end:              // until here: BLOCK, host rights
  WRPKRU_COMPARTMENT_HINTED %r14
  movq %r13, %rsp                           // not touched before: no trusted
  .globl mpkbox_gate_enter_switched         // code runs on compartment memory
  .hidden mpkbox_gate_enter_switched
mpkbox_gate_enter_switched:                 // from _blocked_end: rerun on signal
  movq %rbp, (%rsp)
  CFA_FROM_COPY 56
  movq %r10, %rcx
  movq %rbx, %rdx
  xorl %ebx, %ebx
  xorl %ebp, %ebp
  xorl %r10d, %r10d
  xorl %r12d, %r12d
  xorl %r13d, %r13d
  xorl %r14d, %r14d
  xorl %r15d, %r15d
  movl $8, %eax                             // al bounds vector args (varargs)
  .cfi_remember_state
  call *%r11

// Where the compartment function returns, and where the fault handler
// resumes a thread it unwinds (with ThreadBlock::fault set).
  .globl mpkbox_gate_landing
  .hidden mpkbox_gate_landing
mpkbox_gate_landing:
  movq %rax, %r8
  movq %rdx, %r9
  // Hints, loaded with the compartment's rights (TLS and the selector page
  // are readable to it): this thread's SelectorPage and the frame to pop.
  // Checked after the WRPKRU and replaced when wrong, they only let the
  // loads there start at once instead of three deep.
  LOAD_THREAD %rsi
  movq MPKBOX_SEL_LANDING_HINT(%rsi), %rdi
  WRPKRU_HOST
  CONFIRM_THREAD %rsi, %rax                 // rsi = SelectorPage
  movq MPKBOX_PAGE_SIZE + MPKBOX_TB_DEPTH(%rsi), %r10
  subq $1, %r10
  jb mpkbox_gate_trap                       // depth was 0: no call to return from
  movq %r10, MPKBOX_PAGE_SIZE + MPKBOX_TB_DEPTH(%rsi)
  shlq $MPKBOX_FRAME_SHIFT, %r10
  leaq MPKBOX_PAGE_SIZE + MPKBOX_TB_FRAMES(%rsi, %r10), %r10
  cmpq %r10, %rdi
  je 1f
  movq %r10, %rdi
1:                                          // rdi = the popped Frame
  cmpq $MPKBOX_FRAME_CALL, MPKBOX_FR_KIND(%rdi)
  jne mpkbox_gate_trap
  movq MPKBOX_FR_PREV_PKRU(%rdi), %rcx
  movq %rcx, MPKBOX_SEL_CURRENT_PKRU(%rsi)
  movq MPKBOX_FR_PREV_DOMAIN(%rdi), %rcx
  movq %rcx, MPKBOX_SEL_CURRENT_DOMAIN(%rsi)
  movb $MPKBOX_SELECTOR_ALLOW, MPKBOX_SEL_SELECTOR(%rsi)
  // No DF, AC or TF from the compartment: DF breaks the ABI, AC makes any
  // unaligned access fault. popfq is slow, so only when one is set. The
  // flags go through the frame's scratch word, not the host stack, so the
  // test need not wait for the load of the host rsp.
  leaq MPKBOX_FR_SCRATCH + 8(%rdi), %rsp
  // CFA = the frame's host rsp + 56.
  .cfi_escape DW_CFA_def_cfa_expression, 5, DW_OP_breg5, MPKBOX_FR_SP, DW_OP_deref, DW_OP_plus_uconst, 56
  pushfq
  testl $0x40500, (%rsp)                    // AC | DF | TF
  jz 2f
  andl $~0x40500, (%rsp)
  popfq
2:
  movq MPKBOX_FR_SP(%rdi), %rsp
  .cfi_def_cfa %rsp, 56
  RESTORE_CONTROL_WORDS %rdi
  movq MPKBOX_FR_RET(%rdi), %rcx
  movq %rcx, 48(%rsp)
  RESTORE_CALLEE_SAVED %rdi
  addq $48, %rsp
  .cfi_adjust_cfa_offset -48
  movq %r8, %rax
  movq %r9, %rdx
  xorl %r8d, %r8d
  xorl %r9d, %r9d
  xorl %r10d, %r10d
  xorl %r11d, %r11d
  ret

// A C++ exception unwound out of the compartment function to this frame
// (mpkbox_gate_personality installed us, with compartment rights). rax holds
// the exception, written by compartment code: it is never read.
  .globl mpkbox_gate_exception_pad
  .hidden mpkbox_gate_exception_pad
mpkbox_gate_exception_pad:
  .cfi_restore_state
  WRPKRU_HOST
  LOAD_THREAD %rax
  leaq MPKBOX_PAGE_SIZE(%rax), %r11
  movq MPKBOX_TB_DEPTH(%r11), %r10
  testq %r10, %r10
  jz mpkbox_gate_trap
  shlq $MPKBOX_FRAME_SHIFT, %r10
  leaq MPKBOX_TB_FRAMES - (1 << MPKBOX_FRAME_SHIFT)(%r11, %r10), %r10
  cmpq $MPKBOX_FRAME_CALL, MPKBOX_FR_KIND(%r10)
  jne mpkbox_gate_trap
  movq MPKBOX_FR_SP(%r10), %rsp             // C++ runs on the host stack
  .cfi_def_cfa %rsp, 56
  pushq $0x202                              // no DF, AC or TF for C++
  .cfi_adjust_cfa_offset 8
  popfq
  .cfi_adjust_cfa_offset -8
  subq $8, %rsp
  .cfi_adjust_cfa_offset 8
  call mpkbox_exception_left_compartment@PLT
  jmp mpkbox_gate_landing
  .cfi_endproc
  .size mpkbox_gate_enter, . - mpkbox_gate_enter

// Compartment -> host. Callback i's stub loads i into r11d and jumps to the
// common entry; the arguments stay where the compartment put them.
  .globl mpkbox_callback_stubs
  .hidden mpkbox_callback_stubs
  .type mpkbox_callback_stubs, @function
  .p2align MPKBOX_CB_STUB_SHIFT
mpkbox_callback_stubs:
  .cfi_startproc
  .set stub_index, 0
  .rept MPKBOX_MAX_CALLBACKS
  .p2align MPKBOX_CB_STUB_SHIFT
  movl $stub_index, %r11d
  jmp mpkbox_callback_entry
  .set stub_index, stub_index + 1
  .endr
  .cfi_endproc
  .size mpkbox_callback_stubs, . - mpkbox_callback_stubs

  .globl mpkbox_callback_entry
  .hidden mpkbox_callback_entry
  .type mpkbox_callback_entry, @function
  .p2align 4
mpkbox_callback_entry:
  .cfi_startproc
  .cfi_signal_frame
  .cfi_personality 0x9b, DW.ref.mpkbox_gate_personality
  movq %rcx, %r10                           // WRPKRU needs ecx = edx = 0
  movq %rdx, %xmm15
  movq %r8, %xmm14                          // arguments 5 and 6
  movq %r9, %xmm13
  WRPKRU_HOST
  LOAD_THREAD %rax                          // rax = SelectorPage
  leaq MPKBOX_PAGE_SIZE(%rax), %rdx       // rdx = ThreadBlock
  cmpl $MPKBOX_MAX_CALLBACKS, %r11d
  jae mpkbox_gate_trap
  movq MPKBOX_TB_CALLBACKS(%rdx), %rcx
  shlq $MPKBOX_CB_SHIFT, %r11
  addq %rcx, %r11                           // r11 = CallbackEntry
  movq MPKBOX_SEL_CURRENT_DOMAIN(%rax), %rcx
  testq %rcx, %rcx
  jz mpkbox_gate_trap                       // the host is not a compartment
  cmpq MPKBOX_CB_DOMAIN(%r11), %rcx
  je 1f
  cmpq $MPKBOX_ANY_DOMAIN, MPKBOX_CB_DOMAIN(%r11)
  jne mpkbox_gate_trap                      // not registered for this compartment
1:

  // The top frame must be the call into this compartment.
  movq MPKBOX_TB_DEPTH(%rdx), %rcx
  testq %rcx, %rcx
  jz mpkbox_gate_trap
  cmpq $MPKBOX_MAX_DEPTH, %rcx
  jae mpkbox_gate_trap
  shlq $MPKBOX_FRAME_SHIFT, %rcx
  leaq MPKBOX_TB_FRAMES - (1 << MPKBOX_FRAME_SHIFT)(%rdx, %rcx), %r8  // r8 = call Frame
  cmpq $MPKBOX_FRAME_CALL, MPKBOX_FR_KIND(%r8)
  jne mpkbox_gate_trap
  leaq MPKBOX_TB_FRAMES(%rdx, %rcx), %r9    // r9 = new callback Frame
  movzwl MPKBOX_CB_RETURNS(%r11), %ecx      // beyond the top: no state yet
  movw %cx, MPKBOX_FR_RETURNS(%r9)
  movq %r11, MPKBOX_FR_RET(%r9)             // a checking wrapper's target
  movq MPKBOX_CB_FN(%r11), %r11
  testq %r11, %r11
  jz mpkbox_gate_trap
  // A nested call into this compartment must run below the live frames, and
  // only on the compartment's own stack: the resume path may write there
  // with trusted rights. Checked before any state changes.
  movq MPKBOX_FR_CTX(%r8), %rcx             // rcx = CallContext
  leaq -128(%rsp), %rdx                     // below the caller's red zone
  andq $-16, %rdx
  subq $16, %rdx
  subq MPKBOX_CTX_STACK_BASE(%rcx), %rdx
  cmpq $2 * MPKBOX_PAGE_SIZE, %rdx          // past the guard, room to run
  jb mpkbox_gate_trap
  cmpq MPKBOX_CTX_STACK_SIZE(%rcx), %rdx
  jae mpkbox_gate_trap
  addq MPKBOX_CTX_STACK_BASE(%rcx), %rdx

  addq $1, MPKBOX_PAGE_SIZE + MPKBOX_TB_DEPTH(%rax)
  movq $MPKBOX_FRAME_CALLBACK, MPKBOX_FR_KIND(%r9)
  movq %rsp, MPKBOX_FR_SP(%r9)
  movq %rcx, MPKBOX_FR_CTX(%r9)
  movq MPKBOX_CTX_TOP(%rcx), %xmm12
  movq %xmm12, MPKBOX_FR_SAVED_TOP(%r9)
  movq %rdx, MPKBOX_CTX_TOP(%rcx)
  movq MPKBOX_SEL_CURRENT_PKRU(%rax), %rcx
  movq %rcx, MPKBOX_FR_PREV_PKRU(%r9)
  movq MPKBOX_SEL_CURRENT_DOMAIN(%rax), %rcx
  movq %rcx, MPKBOX_FR_PREV_DOMAIN(%r9)
  // The host runs with the host's control words, kept in the call frame;
  // the compartment's come back when the callback returns.
  stmxcsr MPKBOX_FR_MXCSR(%r9)
  fnstcw MPKBOX_FR_FCW(%r9)
  RESTORE_CONTROL_WORDS %r8

  movq $0, MPKBOX_SEL_CURRENT_PKRU(%rax)
  movq $0, MPKBOX_SEL_CURRENT_DOMAIN(%rax)
  movb $MPKBOX_SELECTOR_ALLOW, MPKBOX_SEL_SELECTOR(%rax)

  // The host stack: just below the frame of the call this callback nests in.
  movq MPKBOX_FR_SP(%r8), %rdx
  andq $-16, %rdx
  subq $16, %rdx
  movq %rsp, (%rdx)
  movq %rdx, %rsp
  CFA_FROM_COPY 8
  pushq $0x202                              // no DF, AC or TF for the host
  CFA_FROM_COPY 8, 8
  popfq
  CFA_FROM_COPY 8
  movq %r10, %rcx
  movq %xmm15, %rdx
  movq %xmm14, %r8
  movq %xmm13, %r9
  xorl %r10d, %r10d
  pxor %xmm12, %xmm12
  pxor %xmm13, %xmm13
  pxor %xmm14, %xmm14
  pxor %xmm15, %xmm15
  .cfi_remember_state
  call *%r11

  // The host function returned: rax, rdx, xmm0, xmm1 hold its result.
  movq %rax, %r8
  movq %rdx, %r9
  LOAD_THREAD %rax
  leaq MPKBOX_PAGE_SIZE(%rax), %r11
  movq MPKBOX_TB_DEPTH(%r11), %r10
  subq $1, %r10
  jb mpkbox_gate_trap
  movq %r10, MPKBOX_TB_DEPTH(%r11)
  shlq $MPKBOX_FRAME_SHIFT, %r10
  leaq MPKBOX_TB_FRAMES(%r11, %r10), %r10   // r10 = the popped callback Frame
  cmpq $MPKBOX_FRAME_CALLBACK, MPKBOX_FR_KIND(%r10)
  jne mpkbox_gate_trap
  RESTORE_CONTROL_WORDS %r10
  // Only the declared result goes back: rdx and xmm1 never carry one.
  xorl %r9d, %r9d
  pxor %xmm1, %xmm1
  cmpw $MPKBOX_RETURNS_FLOAT, MPKBOX_FR_RETURNS(%r10)
  je 2f
  pxor %xmm0, %xmm0
  cmpw $MPKBOX_RETURNS_INTEGER, MPKBOX_FR_RETURNS(%r10)
  je 3f
2:
  xorl %r8d, %r8d
3:
  movq MPKBOX_FR_CTX(%r10), %rcx
  movq MPKBOX_FR_SAVED_TOP(%r10), %rdx
  movq %rdx, MPKBOX_CTX_TOP(%rcx)
  movq MPKBOX_FR_PREV_DOMAIN(%r10), %rcx
  movq %rcx, MPKBOX_SEL_CURRENT_DOMAIN(%rax)
  movq MPKBOX_FR_PREV_PKRU(%r10), %rcx
  movq %rcx, MPKBOX_SEL_CURRENT_PKRU(%rax)
  .globl mpkbox_callback_return_blocked
  .hidden mpkbox_callback_return_blocked
mpkbox_callback_return_blocked:
  movb $MPKBOX_SELECTOR_BLOCK, MPKBOX_SEL_SELECTOR(%rax)
  movq MPKBOX_FR_SP(%r10), %r10             // the compartment's rsp
  movl %ecx, %eax
  xorl %esi, %esi
  xorl %edi, %edi
  xorl %r11d, %r11d
  pxor %xmm2, %xmm2
  pxor %xmm3, %xmm3
  pxor %xmm4, %xmm4
  pxor %xmm5, %xmm5
  pxor %xmm6, %xmm6
  pxor %xmm7, %xmm7
  CLEAR_VECTOR_STATE_FROM_XMM8
  .globl mpkbox_callback_return_blocked_end
  .hidden mpkbox_callback_return_blocked_end
mpkbox_callback_return_blocked_end:         // until here: BLOCK, host rights
  WRPKRU_COMPARTMENT
  movq %r10, %rsp
  .globl mpkbox_callback_return_switched
  .hidden mpkbox_callback_return_switched
mpkbox_callback_return_switched:            // from _blocked_end: rerun on signal
  .cfi_def_cfa %rsp, 8
  movq %r8, %rax
  movq %r9, %rdx
  xorl %ecx, %ecx
  xorl %r8d, %r8d
  xorl %r9d, %r9d
  xorl %r10d, %r10d
  ret

// A C++ exception left the host callback (mpkbox_gate_personality installed
// us, on the host stack). It must not reach compartment frames: the callback
// and the compartment call it nests in end as a fault.
  .globl mpkbox_callback_exception_pad
  .hidden mpkbox_callback_exception_pad
mpkbox_callback_exception_pad:
  .cfi_restore_state
  movq %rax, %rdi
  xorl %ecx, %ecx
  rdpkru
  testl %eax, %eax
  jnz mpkbox_gate_trap                      // only ever reached as the host
  call mpkbox_exception_left_callback@PLT
  jmp mpkbox_gate_landing
  .cfi_endproc
  .size mpkbox_callback_entry, . - mpkbox_callback_entry

// The runtime refused what compartment code asked of it through a callback
// (a free of memory that is not its live allocation): the call ends as a
// fault. Host code in the callback popped the callback's frame; the gate's
// landing pops the call under it.
  .globl mpkbox_gate_abandon
  .hidden mpkbox_gate_abandon
  .type mpkbox_gate_abandon, @function
  .p2align 4
mpkbox_gate_abandon:
  .cfi_startproc
  xorl %ecx, %ecx
  rdpkru
  testl %eax, %eax
  jnz mpkbox_gate_trap                      // only ever reached as the host
  jmp mpkbox_gate_landing
  .cfi_endproc
  .size mpkbox_gate_abandon, . - mpkbox_gate_abandon

  .globl mpkbox_gate_end
  .hidden mpkbox_gate_end
mpkbox_gate_end:

// The personality routine of the gate's frames (runtime/exceptions.cc),
// through a pointer in RELRO memory.
  .section .data.rel.ro.mpkbox_personality, "aw", @progbits
  .p2align 3
  .hidden DW.ref.mpkbox_gate_personality
  .type DW.ref.mpkbox_gate_personality, @object
DW.ref.mpkbox_gate_personality:
  .quad mpkbox_gate_personality
  .size DW.ref.mpkbox_gate_personality, 8

  .section .note.GNU-stack, "", @progbits
