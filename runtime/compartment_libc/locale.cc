// Locales for loaded code: every compartment lives in the C locale. glibc's
// setlocale, newlocale and uselocale take a global lock and write the
// thread's locale (key 0), and other names would load locale files; these
// hand out glibc's own static C locale object (libc's read-only data,
// published in mpkbox_ambient by Runtime::Init) and change nothing.
// "C", "POSIX" and "" (the environment's, which loaded code does not see)
// name it; any other name fails as an unknown locale does (ENOENT).
//
// The _l functions ignore the locale they are given and use the C one, so
// a forged locale_t is never followed. The C locale's multibyte
// conversions are one byte each, ASCII only (glibc 2.36: a byte above 0x7f
// is EILSEQ); they are this file's, since glibc's write errno and, without
// a state of the caller's, a static one (key 0). They are glibc's, reading only
// the locale's tables; the strto*_l still write errno on ERANGE (key 0), as
// glibc's strtod does.
#include <ctype.h>
#include <errno.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wchar.h>
#include <wctype.h>

#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/compartment_libc.h"
#include "trampolines/trampolines.h"

namespace mpkbox::internal {
namespace {

locale_t C() {
  return static_cast<locale_t>(const_cast<void*>(mpkbox_ambient.c_locale));
}

bool IsCName(const char* name) {
  return strcmp(name, "C") == 0 || strcmp(name, "POSIX") == 0 ||
         name[0] == '\0';
}

void SetErrno(int e) { *mpkbox_compartment_errno_location() = e; }

char* Setlocale(int category, const char* name) {
  // A string literal: read-only data, readable inside.
  static constexpr char kC[] = "C";
  if (category < LC_CTYPE || category > LC_IDENTIFICATION) {
    SetErrno(EINVAL);
    return nullptr;
  }
  if (name != nullptr && !IsCName(name)) {
    SetErrno(ENOENT);
    return nullptr;
  }
  return const_cast<char*>(kC);
}

locale_t Newlocale(int mask, const char* name, locale_t) {
  // glibc takes 1 << LC_ALL for every category (libstdc++ passes it).
  if (mask == 1 << LC_ALL) mask = LC_ALL_MASK;
  if ((mask & ~LC_ALL_MASK) != 0 || name == nullptr) {
    SetErrno(EINVAL);
    return nullptr;
  }
  if (!IsCName(name)) {
    SetErrno(ENOENT);
    return nullptr;
  }
  return C();  // whatever the base: every category is C
}

// The thread's locale stays the global one, which is C.
locale_t Uselocale(locale_t) { return LC_GLOBAL_LOCALE; }
locale_t Duplocale(locale_t) { return C(); }
void Freelocale(locale_t) {}  // the C locale is never freed

// localeconv's C answer (read-only data; glibc's writes a static struct).
struct lconv* Localeconv() {
  static constexpr char kDot[] = ".";
  static constexpr char kEmpty[] = "";
  static const struct lconv kCLconv = {
      .decimal_point = const_cast<char*>(kDot),
      .thousands_sep = const_cast<char*>(kEmpty),
      .grouping = const_cast<char*>(kEmpty),
      .int_curr_symbol = const_cast<char*>(kEmpty),
      .currency_symbol = const_cast<char*>(kEmpty),
      .mon_decimal_point = const_cast<char*>(kEmpty),
      .mon_thousands_sep = const_cast<char*>(kEmpty),
      .mon_grouping = const_cast<char*>(kEmpty),
      .positive_sign = const_cast<char*>(kEmpty),
      .negative_sign = const_cast<char*>(kEmpty),
      .int_frac_digits = CHAR_MAX,
      .frac_digits = CHAR_MAX,
      .p_cs_precedes = CHAR_MAX,
      .p_sep_by_space = CHAR_MAX,
      .n_cs_precedes = CHAR_MAX,
      .n_sep_by_space = CHAR_MAX,
      .p_sign_posn = CHAR_MAX,
      .n_sign_posn = CHAR_MAX,
      .int_p_cs_precedes = CHAR_MAX,
      .int_p_sep_by_space = CHAR_MAX,
      .int_n_cs_precedes = CHAR_MAX,
      .int_n_sep_by_space = CHAR_MAX,
      .int_p_sign_posn = CHAR_MAX,
      .int_n_sign_posn = CHAR_MAX,
  };
  return const_cast<struct lconv*>(&kCLconv);
}

char* NlLanginfo(nl_item item) { return nl_langinfo_l(item, C()); }
char* NlLanginfoL(nl_item item, locale_t) { return nl_langinfo_l(item, C()); }

// glibc's _l functions, in the C locale whatever they are given.
template <int (*kFn)(int, locale_t)>
int Ctype(int c, locale_t) {
  return kFn(c, C());
}
template <auto kFn>
auto ToNumber(const char* s, char** end, locale_t) {
  return kFn(s, end, C());
}
template <auto kFn>
auto ToInteger(const char* s, char** end, int base, locale_t) {
  return kFn(s, end, base, C());
}
template <int (*kFn)(const char*, const char*, locale_t)>
int Compare(const char* a, const char* b, locale_t) {
  return kFn(a, b, C());
}
int StrncasecmpL(const char* a, const char* b, size_t n, locale_t) {
  return strncasecmp_l(a, b, n, C());
}
size_t StrxfrmL(char* to, const char* from, size_t n, locale_t) {
  return strxfrm_l(to, from, n, C());
}

wctype_t WctypeL(const char* name, locale_t) { return wctype_l(name, C()); }
int IswctypeL(wint_t c, wctype_t type, locale_t) {
  return iswctype_l(c, type, C());
}
template <wint_t (*kFn)(wint_t, locale_t)>
wint_t WideCaseL(wint_t c, locale_t) {
  return kFn(c, C());
}

template <int (*kFn)(wint_t, locale_t)>
int WideClass(wint_t c) {
  return kFn(c, C());
}
template <wint_t (*kFn)(wint_t, locale_t)>
wint_t WideCase(wint_t c) {
  return kFn(c, C());
}

// ---- the C locale's multibyte characters: ASCII, one byte each ----

size_t Mbrtowc(wchar_t* out, const char* s, size_t n, mbstate_t*) {
  if (s == nullptr) return 0;  // back to the initial state, which it is
  if (n == 0) return static_cast<size_t>(-2);
  const unsigned char c = static_cast<unsigned char>(*s);
  if (c > 0x7f) {
    SetErrno(EILSEQ);
    return static_cast<size_t>(-1);
  }
  if (out != nullptr) *out = c;
  return c != 0 ? 1 : 0;
}
size_t Mbrlen(const char* s, size_t n, mbstate_t* state) {
  return Mbrtowc(nullptr, s, n, state);
}
int Mbtowc(wchar_t* out, const char* s, size_t n) {
  if (s == nullptr) return 0;  // no shift states
  const size_t r = Mbrtowc(out, s, n, nullptr);
  return r == static_cast<size_t>(-2) ? -1 : static_cast<int>(r);
}
size_t Wcrtomb(char* s, wchar_t c, mbstate_t*) {
  if (s == nullptr) return 1;
  if (c < 0 || c > 0x7f) {
    SetErrno(EILSEQ);
    return static_cast<size_t>(-1);
  }
  *s = static_cast<char>(c);
  return 1;
}
wint_t Btowc(int c) {
  return c >= 0 && c <= 0x7f ? static_cast<wint_t>(c) : WEOF;
}
int Wctob(wint_t c) { return c <= 0x7f ? static_cast<int>(c) : EOF; }
int Mbsinit(const mbstate_t*) { return 1; }  // never in a shift state

constexpr char kCOnly[] =
    "hands out glibc's static C locale (read-only data); writes only errno";
constexpr char kAscii[] =
    "the C locale's one-byte ASCII conversion: writes the caller's output "
    "and errno only";
constexpr char kInC[] =
    "glibc's, reading the C locale's tables whatever locale it is given";

}  // namespace

absl::Span<const LibcBinding> LocaleBindings() {
  static const LibcBinding kBindings[] = {
      {"setlocale", LibcFn(&Setlocale), kCOnly},
      {"newlocale", LibcFn(&Newlocale), kCOnly},
      {"__newlocale", LibcFn(&Newlocale), kCOnly},
      {"duplocale", LibcFn(&Duplocale), kCOnly},
      {"__duplocale", LibcFn(&Duplocale), kCOnly},
      {"uselocale", LibcFn(&Uselocale),
       "answers the global locale, which is C; the thread's is never written"},
      {"__uselocale", LibcFn(&Uselocale),
       "answers the global locale, which is C; the thread's is never written"},
      {"freelocale", LibcFn(&Freelocale),
       "nothing to free: the C locale is static"},
      {"__freelocale", LibcFn(&Freelocale),
       "nothing to free: the C locale is static"},
      {"localeconv", LibcFn(&Localeconv), "a constant in read-only data"},
      {"nl_langinfo", LibcFn(&NlLanginfo), kInC},
      {"nl_langinfo_l", LibcFn(&NlLanginfoL), kInC},
      {"__nl_langinfo_l", LibcFn(&NlLanginfoL), kInC},
      {"wctype_l", LibcFn(&WctypeL), kInC},
      {"__wctype_l", LibcFn(&WctypeL), kInC},
      {"iswctype_l", LibcFn(&IswctypeL), kInC},
      {"__iswctype_l", LibcFn(&IswctypeL), kInC},
      {"towlower_l", LibcFn(&WideCaseL<&towlower_l>), kInC},
      {"__towlower_l", LibcFn(&WideCaseL<&towlower_l>), kInC},
      {"towupper_l", LibcFn(&WideCaseL<&towupper_l>), kInC},
      {"__towupper_l", LibcFn(&WideCaseL<&towupper_l>), kInC},
      {"isalnum_l", LibcFn(&Ctype<&isalnum_l>), kInC},
      {"isalpha_l", LibcFn(&Ctype<&isalpha_l>), kInC},
      {"isblank_l", LibcFn(&Ctype<&isblank_l>), kInC},
      {"iscntrl_l", LibcFn(&Ctype<&iscntrl_l>), kInC},
      {"isdigit_l", LibcFn(&Ctype<&isdigit_l>), kInC},
      {"isgraph_l", LibcFn(&Ctype<&isgraph_l>), kInC},
      {"islower_l", LibcFn(&Ctype<&islower_l>), kInC},
      {"isprint_l", LibcFn(&Ctype<&isprint_l>), kInC},
      {"ispunct_l", LibcFn(&Ctype<&ispunct_l>), kInC},
      {"isspace_l", LibcFn(&Ctype<&isspace_l>), kInC},
      {"isupper_l", LibcFn(&Ctype<&isupper_l>), kInC},
      {"isxdigit_l", LibcFn(&Ctype<&isxdigit_l>), kInC},
      {"tolower_l", LibcFn(&Ctype<&tolower_l>), kInC},
      {"toupper_l", LibcFn(&Ctype<&toupper_l>), kInC},
      {"strtod_l", LibcFn(&ToNumber<&strtod_l>), kInC},
      {"__strtod_l", LibcFn(&ToNumber<&strtod_l>), kInC},
      {"strtof_l", LibcFn(&ToNumber<&strtof_l>), kInC},
      {"__strtof_l", LibcFn(&ToNumber<&strtof_l>), kInC},
      {"strtold_l", LibcFn(&ToNumber<&strtold_l>), kInC},
      {"__strtold_l", LibcFn(&ToNumber<&strtold_l>), kInC},
      {"strtol_l", LibcFn(&ToInteger<&strtol_l>), kInC},
      {"strtoul_l", LibcFn(&ToInteger<&strtoul_l>), kInC},
      {"strtoll_l", LibcFn(&ToInteger<&strtoll_l>), kInC},
      {"strtoull_l", LibcFn(&ToInteger<&strtoull_l>), kInC},
      {"strcoll_l", LibcFn(&Compare<&strcoll_l>), kInC},
      {"__strcoll_l", LibcFn(&Compare<&strcoll_l>), kInC},
      {"strcasecmp_l", LibcFn(&Compare<&strcasecmp_l>), kInC},
      {"strncasecmp_l", LibcFn(&StrncasecmpL), kInC},
      {"strxfrm_l", LibcFn(&StrxfrmL), kInC},
      {"__strxfrm_l", LibcFn(&StrxfrmL), kInC},
      {"iswalnum", LibcFn(&WideClass<&iswalnum_l>), kInC},
      {"iswalpha", LibcFn(&WideClass<&iswalpha_l>), kInC},
      {"iswblank", LibcFn(&WideClass<&iswblank_l>), kInC},
      {"iswcntrl", LibcFn(&WideClass<&iswcntrl_l>), kInC},
      {"iswdigit", LibcFn(&WideClass<&iswdigit_l>), kInC},
      {"iswgraph", LibcFn(&WideClass<&iswgraph_l>), kInC},
      {"iswlower", LibcFn(&WideClass<&iswlower_l>), kInC},
      {"iswprint", LibcFn(&WideClass<&iswprint_l>), kInC},
      {"iswpunct", LibcFn(&WideClass<&iswpunct_l>), kInC},
      {"iswspace", LibcFn(&WideClass<&iswspace_l>), kInC},
      {"iswupper", LibcFn(&WideClass<&iswupper_l>), kInC},
      {"iswxdigit", LibcFn(&WideClass<&iswxdigit_l>), kInC},
      {"towlower", LibcFn(&WideCase<&towlower_l>), kInC},
      {"towupper", LibcFn(&WideCase<&towupper_l>), kInC},
      {"mbrtowc", LibcFn(&Mbrtowc), kAscii},
      {"mbrlen", LibcFn(&Mbrlen), kAscii},
      {"__mbrlen", LibcFn(&Mbrlen), kAscii},
      {"mbtowc", LibcFn(&Mbtowc), kAscii},
      {"wcrtomb", LibcFn(&Wcrtomb), kAscii},
      {"btowc", LibcFn(&Btowc), kAscii},
      {"wctob", LibcFn(&Wctob), kAscii},
      {"mbsinit", LibcFn(&Mbsinit), kAscii},
  };
  return kBindings;
}

}  // namespace mpkbox::internal
