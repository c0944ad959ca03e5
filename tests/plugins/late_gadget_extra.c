/* Five WRPKRU byte sequences inside other instructions (a mov's immediate):
   they cannot be overwritten, so each needs a hardware breakpoint, one
   more than the 4 debug registers (gadget_guard_test.cc). */
#define SPANNING(n)                                                          \
  unsigned late_gadget_extra_##n(void) {                                     \
    unsigned r;                                                              \
    __asm__ volatile("movl $0x00ef010f, %0" : "=r"(r));                      \
    return r;                                                                \
  }
SPANNING(0)
SPANNING(1)
SPANNING(2)
SPANNING(3)
SPANNING(4)
