/* loader_attack_refused_features_test.cc: thread-local data in the
   initial-exec model (R_X86_64_TPOFF64, DF_STATIC_TLS): an offset from the
   host thread's FS base, which the loader refuses. */
__thread int la_tls_counter __attribute__((tls_model("initial-exec"))) = 7;

int la_tls_next(void) { return ++la_tls_counter; }
