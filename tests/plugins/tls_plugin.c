/* loader_tls_test.cc: thread-local variables in the dynamic models the
   loader supports. An exported one with an initial value (general-dynamic,
   .tdata), static ones (local-dynamic, one in .tbss, one in .tdata). */
__thread int tls_counter = 7;
static __thread long tls_zeroed[4];
static __thread char tls_name[16] = "initial";

int tls_next(void) { return ++tls_counter; }
int tls_get(void) { return tls_counter; }
void tls_set(int v) { tls_counter = v; }
int* tls_counter_address(void) { return &tls_counter; }

long tls_zeroed_add(long v) {
  tls_zeroed[1] += v;
  return tls_zeroed[1];
}

char* tls_name_address(void) { return tls_name; }

/* An attack: __tls_get_addr with a module id the loader never gave out. */
extern void* __tls_get_addr(void* index);
void* tls_forged_module(unsigned long module) {
  unsigned long index[2] = {module, 0};
  return __tls_get_addr(index);
}
