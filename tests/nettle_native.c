/* nettle_native: the SHA-256 and SM3 of standard input, by the system's
   libnettle called natively, for loader_attack_gadget_rewrite_test.cc to
   compare with the compartment's. A process of its own: a test binary
   linking libnettle would hold its WRPKRU bytes, which strict mode must
   guard. */
#include <nettle/sha2.h>
#include <nettle/sm3.h>
#include <stdio.h>

static void Print(const char* name, const uint8_t* digest, size_t n) {
  printf("%s ", name);
  for (size_t i = 0; i < n; ++i) printf("%02x", digest[i]);
  printf("\n");
}

int main(void) {
  struct sha256_ctx sha;
  struct sm3_ctx sm;
  sha256_init(&sha);
  sm3_init(&sm);
  uint8_t buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0) {
    sha256_update(&sha, n, buf);
    sm3_update(&sm, n, buf);
  }
  uint8_t digest[SHA256_DIGEST_SIZE];
  sha256_digest(&sha, sizeof(digest), digest);
  Print("sha256", digest, sizeof(digest));
  uint8_t digest3[SM3_DIGEST_SIZE];
  sm3_digest(&sm, sizeof(digest3), digest3);
  Print("sm3", digest3, sizeof(digest3));
  return 0;
}
