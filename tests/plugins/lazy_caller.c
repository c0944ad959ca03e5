/* Linked -z lazy against lazy_callee.so and loaded with RTLD_LAZY behind
   mpkbox's dlopen: its first call goes through ld.so's resolver, whose
   XRSTOR gadget_guard.cc replaced with a trap (gadget_scale_test.cc). */
double lazy_callee_mix(double a, double b, double c);
double lazy_caller_mix(double a, double b, double c) {
  return lazy_callee_mix(a, b, c) + 1;
}
