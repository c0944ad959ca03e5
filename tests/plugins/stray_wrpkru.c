/* A library of a host that uses PKU itself: four functions with a real
   WRPKRU each. The test suite builds it four times (stray_a.so ..
   stray_d.so, STRAY(name) giving each its own symbols); the host links two
   and dlopens two (gadget_scale_test.cc). gadget_guard.cc must guard all
   16, far beyond the 4 debug registers, and host code must still run them. */
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define STRAY(name) CAT(STRAY_LIB, name)

#define WRPKRU_FUNCTION(n)                                                   \
  unsigned STRAY(n)(unsigned pkru) {                                         \
    unsigned eax, edx;                                                       \
    __asm__ volatile("xorl %%ecx, %%ecx\n\txorl %%edx, %%edx\n\twrpkru"      \
                     :                                                       \
                     : "a"(pkru)                                             \
                     : "rcx", "rdx", "memory");                              \
    __asm__ volatile("xorl %%ecx, %%ecx\n\trdpkru" : "=a"(eax), "=d"(edx)    \
                     :                                                       \
                     : "rcx");                                               \
    return eax;                                                              \
  }

WRPKRU_FUNCTION(set0)
WRPKRU_FUNCTION(set1)
WRPKRU_FUNCTION(set2)
WRPKRU_FUNCTION(set3)
