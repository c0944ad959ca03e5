// Conversions between text and values for loaded code, with compartment
// rights: asprintf on the compartment's heap, sscanf, and the strtol
// family and strtod/strtof. glibc's write errno (thread-local, key 0) on
// overflow, which faults under Ambient::kReadOnly: these parse themselves
// (floats with std::from_chars) and set the compartment's errno slot.
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <charconv>
#include <cstdint>
#include <limits>

#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/compartment_libc.h"
#include "runtime/compartment_libc/scan.h"

namespace mpkbox::internal {
namespace {

int& Errno() { return *mpkbox_compartment_errno_location(); }

// ---- asprintf ---------------------------------------------------------------

int Vasprintf(char** out, const char* format, va_list ap) {
  char stack[256];
  va_list again;
  va_copy(again, ap);
  const int n = vsnprintf(stack, sizeof(stack), format, ap);
  if (n < 0) {
    va_end(again);
    return -1;
  }
  char* p = static_cast<char*>(malloc(static_cast<size_t>(n) + 1));
  if (p == nullptr) {
    va_end(again);
    Errno() = ENOMEM;
    return -1;
  }
  if (static_cast<size_t>(n) < sizeof(stack)) {
    memcpy(p, stack, static_cast<size_t>(n) + 1);
  } else {
    vsnprintf(p, static_cast<size_t>(n) + 1, format, again);
  }
  va_end(again);
  *out = p;
  return n;
}
int Asprintf(char** out, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  const int r = Vasprintf(out, format, ap);
  va_end(ap);
  return r;
}
int VasprintfChk(char** out, int, const char* format, va_list ap) {
  return Vasprintf(out, format, ap);
}
int AsprintfChk(char** out, int, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  const int r = Vasprintf(out, format, ap);
  va_end(ap);
  return r;
}

// ---- strtol -----------------------------------------------------------------

bool IsSpace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

int Digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'z') return c - 'a' + 10;
  if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
  return 99;
}

// strtol's grammar in the C locale, as glibc parses it; C23 adds 0b.
// *negative and the magnitude (saturated, *overflow set), or no digits
// (*end == s).
uint64_t ParseMagnitude(const char* s, char** end, int base, bool c23,
                        bool* negative, bool* overflow) {
  const char* p = s;
  *negative = false;
  *overflow = false;
  if (end != nullptr) *end = const_cast<char*>(s);
  if (base < 0 || base == 1 || base > 36) {
    Errno() = EINVAL;
    return 0;
  }
  while (IsSpace(*p)) ++p;
  if (*p == '-' || *p == '+') *negative = *p++ == '-';
  if ((base == 0 || base == 16) && p[0] == '0' && (p[1] | 0x20) == 'x' &&
      Digit(p[2]) < 16) {
    p += 2;
    base = 16;
  } else if (c23 && (base == 0 || base == 2) && p[0] == '0' &&
             (p[1] | 0x20) == 'b' && Digit(p[2]) < 2) {
    p += 2;
    base = 2;
  } else if (base == 0) {
    base = p[0] == '0' ? 8 : 10;
  }
  const char* digits = p;
  uint64_t value = 0;
  for (int d; (d = Digit(*p)) < base; ++p) {
    if (__builtin_mul_overflow(value, static_cast<uint64_t>(base), &value) ||
        __builtin_add_overflow(value, static_cast<uint64_t>(d), &value)) {
      *overflow = true;
    }
  }
  if (p == digits) return 0;  // no number: *end stays s
  if (end != nullptr) *end = const_cast<char*>(p);
  return *overflow ? std::numeric_limits<uint64_t>::max() : value;
}

template <bool kC23>
long long StrToSigned(const char* s, char** end, int base) {
  bool negative, overflow;
  const uint64_t m = ParseMagnitude(s, end, base, kC23, &negative, &overflow);
  constexpr uint64_t kMax = std::numeric_limits<long long>::max();
  if (overflow || m > kMax + negative) {
    Errno() = ERANGE;
    return negative ? std::numeric_limits<long long>::min()
                    : std::numeric_limits<long long>::max();
  }
  return negative ? static_cast<long long>(0 - m) : static_cast<long long>(m);
}

template <bool kC23>
unsigned long long StrToUnsigned(const char* s, char** end, int base) {
  bool negative, overflow;
  const uint64_t m = ParseMagnitude(s, end, base, kC23, &negative, &overflow);
  if (overflow) {
    Errno() = ERANGE;
    return std::numeric_limits<unsigned long long>::max();
  }
  return negative ? 0 - m : m;
}

// Whether a number from_chars found out of range is too large (rather than
// too small): its decimal (or, hex, binary) magnitude from the digits
// before the point, the zeros after it, and the exponent.
bool TooLarge(const char* p, const char* end, bool hex) {
  auto digit = [hex](char c) {
    return (c >= '0' && c <= '9') ||
           (hex && static_cast<unsigned>((c | 0x20) - 'a') < 6u);
  };
  const int scale = hex ? 4 : 1;
  while (p < end && *p == '0') ++p;
  long magnitude = 0;
  for (; p < end && digit(*p); ++p) magnitude += scale;
  if (p < end && *p == '.') {
    ++p;
    if (magnitude == 0) {
      for (; p < end && *p == '0'; ++p) magnitude -= scale;
    }
    while (p < end && digit(*p)) ++p;
  }
  if (p < end && ((*p | 0x20) == 'e' || (*p | 0x20) == 'p')) {
    ++p;
    const bool negative = *p == '-';
    if (*p == '-' || *p == '+') ++p;
    long exponent = 0;
    for (; p < end && *p >= '0' && *p <= '9'; ++p) {
      exponent = exponent < 100000000 ? exponent * 10 + (*p - '0') : exponent;
    }
    magnitude += negative ? -exponent : exponent;
  }
  return magnitude > 0;
}

// strtod's grammar in the C locale: whitespace, a sign, then what
// std::from_chars reads (decimal, hex after "0x", inf, nan), with no errno
// of its own and no locale.
template <typename T>
T StrToFloat(const char* s, char** end) {
  const char* p = s;
  while (IsSpace(*p)) ++p;
  const bool negative = *p == '-';
  if (*p == '-' || *p == '+') ++p;
  const bool hex = p[0] == '0' && (p[1] | 0x20) == 'x' &&
                   (Digit(p[2]) < 16 || (p[2] == '.' && Digit(p[3]) < 16));
  const char* digits = hex ? p + 2 : p;
  T value{};
  const std::from_chars_result r = std::from_chars(
      digits, digits + strlen(digits), value,
      hex ? std::chars_format::hex : std::chars_format::general);
  if (r.ptr == digits) {
    if (end != nullptr) *end = const_cast<char*>(s);
    return 0;
  }
  if (r.ec == std::errc::result_out_of_range) {
    Errno() = ERANGE;
    value = TooLarge(digits, r.ptr, hex) ? std::numeric_limits<T>::infinity()
                                         : T{0};
  }
  if (end != nullptr) *end = const_cast<char*>(r.ptr);
  return negative ? -value : value;
}

double Atof(const char* s) { return StrToFloat<double>(s, nullptr); }

long long StrtolInternal(const char* s, char** end, int base, int) {
  return StrToSigned<false>(s, end, base);
}
unsigned long long StrtoulInternal(const char* s, char** end, int base, int) {
  return StrToUnsigned<false>(s, end, base);
}
int Atoi(const char* s) {
  return static_cast<int>(StrToSigned<false>(s, nullptr, 10));
}
long long Atoll(const char* s) { return StrToSigned<false>(s, nullptr, 10); }

// ---- messages ---------------------------------------------------------------

// No message catalogs inside (glibc's gettext takes a lock in key-0
// memory): every message is its untranslated self, as in the C locale.
char* Gettext(const char* message) { return const_cast<char*>(message); }
char* Dgettext(const char*, const char* message) {
  return const_cast<char*>(message);
}
char* Dcgettext(const char*, const char* message, int) {
  return const_cast<char*>(message);
}
char* Ngettext(const char* one, const char* many, unsigned long n) {
  return const_cast<char*>(n == 1 ? one : many);
}
char* Dngettext(const char*, const char* one, const char* many,
                unsigned long n) {
  return Ngettext(one, many, n);
}
char* Dcngettext(const char*, const char* one, const char* many,
                 unsigned long n, int) {
  return Ngettext(one, many, n);
}
// The domain or directory asked for, as if set (nothing is looked up).
char* Textdomain(const char* domain) {
  return const_cast<char*>(domain != nullptr ? domain : "messages");
}
char* Bindtextdomain(const char*, const char* dir) {
  return const_cast<char*>(dir);
}

constexpr char kHeap[] =
    "formats with compartment rights; the result is on the compartment's "
    "heap";
constexpr char kScan[] =
    "reads its string, writes only what the format names (scan.cc); errno "
    "goes to the compartment's slot";
constexpr char kMessages[] =
    "returns one of its arguments: no catalogs inside, every message "
    "untranslated";
constexpr char kParse[] =
    "parses its argument; errno goes to the compartment's slot";

}  // namespace

double CompartmentStrtod(const char* s, char** end) {
  return StrToFloat<double>(s, end);
}

long long CompartmentStrtoll(const char* s, char** end, int base) {
  return StrToSigned<true>(s, end, base);
}
unsigned long long CompartmentStrtoull(const char* s, char** end, int base) {
  return StrToUnsigned<true>(s, end, base);
}

absl::Span<const LibcBinding> FormatBindings() {
  static const LibcBinding kBindings[] = {
      {"asprintf", LibcFn(&Asprintf), kHeap},
      {"vasprintf", LibcFn(&Vasprintf), kHeap},
      {"__asprintf_chk", LibcFn(&AsprintfChk), kHeap},
      {"__vasprintf_chk", LibcFn(&VasprintfChk), kHeap},
      {"sscanf", LibcFn(&CompartmentSscanf), kScan},
      {"vsscanf", LibcFn(&CompartmentVsscanf), kScan},
      {"__isoc99_sscanf", LibcFn(&CompartmentSscanf), kScan},
      {"__isoc99_vsscanf", LibcFn(&CompartmentVsscanf), kScan},
      {"__isoc23_sscanf", LibcFn(&CompartmentSscanf), kScan},
      {"__isoc23_vsscanf", LibcFn(&CompartmentVsscanf), kScan},
      {"strtol", LibcFn(&StrToSigned<false>), kParse},
      {"strtoll", LibcFn(&StrToSigned<false>), kParse},
      {"strtoq", LibcFn(&StrToSigned<false>), kParse},
      {"strtoimax", LibcFn(&StrToSigned<false>), kParse},
      {"strtoul", LibcFn(&StrToUnsigned<false>), kParse},
      {"strtoull", LibcFn(&StrToUnsigned<false>), kParse},
      {"strtouq", LibcFn(&StrToUnsigned<false>), kParse},
      {"strtoumax", LibcFn(&StrToUnsigned<false>), kParse},
      {"__isoc23_strtol", LibcFn(&StrToSigned<true>), kParse},
      {"__isoc23_strtoll", LibcFn(&StrToSigned<true>), kParse},
      {"__isoc23_strtoimax", LibcFn(&StrToSigned<true>), kParse},
      {"__isoc23_strtoul", LibcFn(&StrToUnsigned<true>), kParse},
      {"__isoc23_strtoull", LibcFn(&StrToUnsigned<true>), kParse},
      {"__isoc23_strtoumax", LibcFn(&StrToUnsigned<true>), kParse},
      {"__strtol_internal", LibcFn(&StrtolInternal), kParse},
      {"__strtoll_internal", LibcFn(&StrtolInternal), kParse},
      {"__strtoul_internal", LibcFn(&StrtoulInternal), kParse},
      {"__strtoull_internal", LibcFn(&StrtoulInternal), kParse},
      {"strtod", LibcFn(&StrToFloat<double>), kParse},
      {"strtof", LibcFn(&StrToFloat<float>), kParse},
      {"atof", LibcFn(&Atof), kParse},
      {"gettext", LibcFn(&Gettext), kMessages},
      {"dgettext", LibcFn(&Dgettext), kMessages},
      {"dcgettext", LibcFn(&Dcgettext), kMessages},
      {"__dcgettext", LibcFn(&Dcgettext), kMessages},
      {"ngettext", LibcFn(&Ngettext), kMessages},
      {"dngettext", LibcFn(&Dngettext), kMessages},
      {"dcngettext", LibcFn(&Dcngettext), kMessages},
      {"textdomain", LibcFn(&Textdomain), kMessages},
      {"bindtextdomain", LibcFn(&Bindtextdomain), kMessages},
      {"bind_textdomain_codeset", LibcFn(&Bindtextdomain), kMessages},
      {"atoi", LibcFn(&Atoi), kParse},
      {"atol", LibcFn(&Atoll), kParse},
      {"atoll", LibcFn(&Atoll), kParse},
  };
  return kBindings;
}

}  // namespace mpkbox::internal
