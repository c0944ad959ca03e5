/* pcre2_client.c: compile, optionally JIT-compile, and match in one call. */
#ifndef MPKBOX_TESTS_PLUGINS_PCRE2_CLIENT_H_
#define MPKBOX_TESTS_PLUGINS_PCRE2_CLIENT_H_

#ifdef __cplusplus
extern "C" {
#endif

struct Pcre2ClientResult {
  int jit;          /* pcre2_jit_compile's result (1: not asked) */
  int rc;           /* pcre2_match's */
  long ovector[4];  /* the match and the first group, -1 if none */
};

/* 0, or pcre2_compile's error code. */
int pcre2_client_match(const char* pattern, const char* subject, int use_jit,
                       struct Pcre2ClientResult* out);

#ifdef __cplusplus
}
#endif

#endif /* MPKBOX_TESTS_PLUGINS_PCRE2_CLIENT_H_ */
