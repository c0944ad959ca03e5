/* loader_attack_refused_features_test.cc: thread-local data (PT_TLS), which the
   loader refuses. */
__thread int la_tls_counter = 7;

int la_tls_next(void) { return ++la_tls_counter; }
