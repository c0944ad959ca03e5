/* A library the host dlopens after Runtime::Init that carries a WRPKRU of
   its own (gadget_guard_test.cc): mpkbox must guard it before compartment
   code runs again. */
void late_gadget_wrpkru(void) { __asm__ volatile(".byte 0x0f, 0x01, 0xef"); }
