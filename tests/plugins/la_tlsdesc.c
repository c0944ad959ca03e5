/* loader_attack_refused_features_test.cc: thread-local data reached through
   TLS descriptors (built with -mtls-dialect=gnu2: R_X86_64_TLSDESC), which
   the loader refuses. */
__thread int la_tlsdesc_counter = 7;

int la_tlsdesc_next(void) { return ++la_tlsdesc_counter; }
