/* One WRPKRU more than the debug registers can guard (gadget_guard_test.cc). */
void late_gadget_extra_wrpkru(void) {
  __asm__ volatile(".byte 0x0f, 0x01, 0xef");
}
