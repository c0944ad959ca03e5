// A raw syscall for the C library wrappers of loaded code
// (runtime/compartment_libc/syscalls.cc). glibc's read, write, close,
// getrandom, ... are cancellation points: in a process with more than one
// thread they mark the thread's descriptor (key 0) cancellable around the
// syscall, a write compartment code may not make. This one writes no memory
// and sets no errno: it returns the kernel's result (-errno on failure). The
// syscall arrives as SIGSYS like any other from compartment code, and the
// compartment's policy decides.

  .text
  .globl mpkbox_compartment_syscall
  .hidden mpkbox_compartment_syscall
  .type mpkbox_compartment_syscall, @function
  .p2align 4
// long mpkbox_compartment_syscall(long nr, long a, long b, long c, long d,
//                                 long e, long f)
mpkbox_compartment_syscall:
  .cfi_startproc
  movq %rdi, %rax
  movq %rsi, %rdi
  movq %rdx, %rsi
  movq %rcx, %rdx
  movq %r8, %r10
  movq %r9, %r8
  movq 8(%rsp), %r9
  syscall
  ret
  .cfi_endproc
  .size mpkbox_compartment_syscall, . - mpkbox_compartment_syscall

  .section .note.GNU-stack, "", @progbits
