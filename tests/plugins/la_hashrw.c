/* loader_attack_malformed_test.cc: writable room (.data, file-backed) where the
   test puts a copy of the object's DT_GNU_HASH table and points DT_GNU_HASH at
   it; la_poke then rewrites the table from inside after Load validated it. */
#include <stdint.h>

uint32_t la_hash_copy[1024] = {1};

void la_poke(uint32_t index, uint32_t value) {
  la_hash_copy[index & 1023] = value;
}

int la_ok(int x) { return 2 * x + 1; }
