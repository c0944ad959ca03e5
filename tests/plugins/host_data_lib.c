/* A library the host dlopens after Runtime::Init (host_memory_test.cc): its
 * writable data holds a secret, on a page of its own past the GOT. */
#include <stdint.h>

__attribute__((aligned(4096))) volatile long host_data_lib_secret[512] = {
    0x5ec7e75ec7e7};

volatile long* host_data_lib_secret_address(void) {
  return host_data_lib_secret;
}
