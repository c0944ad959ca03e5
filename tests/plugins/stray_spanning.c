/* A WRPKRU byte sequence inside a mov's immediate, as in Debian's libnettle:
   host code runs the mov, so the bytes cannot become a trap; gadget_guard.cc
   keeps a hardware breakpoint on them (gadget_scale_test.cc). */
unsigned stray_spanning(void) {
  unsigned r;
  __asm__ volatile("movl $0x00ef010f, %0" : "=r"(r));
  return r;
}
