// longjmp for code loaded into compartments (runtime/loader/import_policy.cc
// binds longjmp, _longjmp, siglongjmp and __longjmp_chk to it). glibc's own
// unwinds the thread's cleanup chain, which writes the thread descriptor on
// key 0: compartment code may not. This one only restores what _setjmp
// saved (glibc's jmp_buf, pointers mangled with the thread's pointer guard)
// and runs with the caller's rights; it writes no memory and no PKRU.

#define JB_RBX 0
#define JB_RBP 1
#define JB_R12 2
#define JB_R13 3
#define JB_R14 4
#define JB_R15 5
#define JB_RSP 6
#define JB_PC 7
#define POINTER_GUARD 0x30  // tcbhead_t.pointer_guard

  .text
  .globl mpkbox_compartment_longjmp
  .hidden mpkbox_compartment_longjmp
  .type mpkbox_compartment_longjmp, @function
  .p2align 4
mpkbox_compartment_longjmp:
  .cfi_startproc
  movq (JB_RSP * 8)(%rdi), %r8
  movq (JB_RBP * 8)(%rdi), %r9
  movq (JB_PC * 8)(%rdi), %rdx
  rorq $0x11, %r8
  xorq %fs:POINTER_GUARD, %r8
  rorq $0x11, %r9
  xorq %fs:POINTER_GUARD, %r9
  rorq $0x11, %rdx
  xorq %fs:POINTER_GUARD, %rdx
  movq (JB_RBX * 8)(%rdi), %rbx
  movq (JB_R12 * 8)(%rdi), %r12
  movq (JB_R13 * 8)(%rdi), %r13
  movq (JB_R14 * 8)(%rdi), %r14
  movq (JB_R15 * 8)(%rdi), %r15
  movl %esi, %eax
  testl %eax, %eax
  jnz 1f
  incl %eax                                 // longjmp(env, 0) returns 1
1:
  movq %r8, %rsp
  movq %r9, %rbp
  jmpq *%rdx
  .cfi_endproc
  .size mpkbox_compartment_longjmp, . - mpkbox_compartment_longjmp

  .section .note.GNU-stack, "", @progbits
