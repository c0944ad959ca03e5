/* loader_tls_test.cc: another object's thread-local variable (DTPMOD64 and
   DTPOFF64 against a symbol of tls_plugin, which it needs). */
extern __thread int tls_counter;

int tls_user_double(void) {
  tls_counter *= 2;
  return tls_counter;
}
