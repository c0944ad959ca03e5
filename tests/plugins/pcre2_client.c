/* pcre2 as a program uses it, in one call (pcre2_match takes seven
   arguments; Compartment::Call passes at most six). Built as a plugin that
   needs libpcre2-8 (the compartment loads it too) and compiled into the
   test for the native run. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

#include "pcre2_client.h"

int pcre2_client_match(const char* pattern, const char* subject, int use_jit,
                       struct Pcre2ClientResult* out) {
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   0, &error, &error_offset, NULL);
  if (code == NULL) return error;
  out->jit = use_jit ? pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) : 1;
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(code, NULL);
  out->rc = pcre2_match(code, (PCRE2_SPTR)subject, strlen(subject), 0, 0, data,
                        NULL);
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data);
  for (int i = 0; i < 4; ++i) out->ovector[i] = out->rc > 1 ? (long)ov[i] : -1;
  pcre2_match_data_free(data);
  pcre2_code_free(code);
  return 0;
}
