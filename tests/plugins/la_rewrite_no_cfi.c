/* loader_attack_gadget_rewrite_test.cc: la_rewrite.so's WRPKRU pattern
   (rol $15,%eax; add %ebp,%edi), rewritable by itself, but in assembly with
   no CFI: no unwind table entry says where its instructions start, so Load
   refuses it rather than guess. */
#include "la_rewrite_wrpkru.h"

#define LA_RW_WITHOUT_CFI(x)
__asm__(LA_RW_WRPKRU("la_rw_no_cfi", LA_RW_WITHOUT_CFI));
