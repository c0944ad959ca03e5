/* loader_attack_*_test.cc: data of a loaded object (.data, .bss, RELRO), a
   constructor that counts its runs, and a well-behaved function. Also the
   base the malformed-ELF tests corrupt. */
#include <stdint.h>
#include <string.h>

int la_counter = 41; /* .data */
int la_ctor_runs;    /* .bss */
/* Pointers needing relocation, const: .data.rel.ro, inside PT_GNU_RELRO. */
static const char* const la_table[] = {"alpha", "beta", "gamma", "delta"};

__attribute__((constructor)) static void la_data_init(void) { ++la_ctor_runs; }

int la_get_counter(void) { return la_counter; }
int la_bump_counter(void) { return ++la_counter; }
int* la_counter_address(void) { return &la_counter; }
int la_ctor_count(void) { return la_ctor_runs; }
const char* const* la_table_address(void) { return la_table; }
size_t la_table_len(int i) { return strlen(la_table[i & 3]); }

/* Writes the RELRO table from inside: must fault. */
void la_write_table(void) {
  *(const char* volatile*)(uintptr_t)&la_table[0] = "evil";
}

int la_ok(int x) { return 2 * x + 1; }
