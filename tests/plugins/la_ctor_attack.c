/* loader_attack_constructor_test.cc: a constructor that attacks the host. It
   writes to the host address the host function la_target (exposed by the test)
   returns, while the loader is still inside Compartment::Load. */
#include <stdint.h>

extern uint64_t la_target(void);

__attribute__((constructor)) static void la_ctor_attack(void) {
  uint64_t* p = (uint64_t*)(uintptr_t)la_target();
  if (p == 0) return;
  *(volatile uint64_t*)p = 0x4141414141414141ull;
}

int la_ok(int x) { return 2 * x + 1; }
