// sscanf for loaded code, with compartment rights. glibc's locks the string
// FILE through __libc_cleanup_push_defer, which writes the thread's
// descriptor (key 0), and its number conversions write errno in TLS; this
// one reads the string and writes only what the format names, with
// format.cc's strtol and strtod.
#include "runtime/compartment_libc/scan.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/compartment_libc.h"

namespace mpkbox::internal {
namespace {

bool Space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

enum class Size { kChar, kShort, kInt, kLong, kLongLong, kSizeT, kPtrdiff };

void StoreInt(va_list* ap, Size size, uint64_t v) {
  switch (size) {
    case Size::kChar:
      *va_arg(*ap, char*) = static_cast<char>(v);
      break;
    case Size::kShort:
      *va_arg(*ap, short*) = static_cast<short>(v);
      break;
    case Size::kInt:
      *va_arg(*ap, int*) = static_cast<int>(v);
      break;
    default:
      *va_arg(*ap, long*) = static_cast<long>(v);
      break;
  }
}

// A float at s, at most `width` characters: its length, or 0.
size_t ParseFloat(const char* s, size_t width, double* out) {
  char token[128];
  size_t n = 0;
  while (n < width && n + 1 < sizeof(token) && s[n] != 0 && !Space(s[n])) {
    token[n] = s[n];
    ++n;
  }
  token[n] = 0;
  char* end = token;
  *out = CompartmentStrtod(token, &end);
  return static_cast<size_t>(end - token);
}

}  // namespace

int CompartmentVsscanf(const char* in, const char* format, va_list args) {
  va_list ap;
  va_copy(ap, args);
  const char* s = in;
  int assigned = 0;
  bool converted = false;
  for (const char* f = format; *f != 0; ++f) {
    if (Space(*f)) {
      while (Space(*s)) ++s;
      continue;
    }
    if (*f != '%' || f[1] == '%') {
      if (*f == '%') ++f;
      if (*s == 0) goto input_failure;
      if (*s != *f) goto done;
      ++s;
      continue;
    }
    ++f;
    {
      const bool suppress = *f == '*';
      if (suppress) ++f;
      size_t width = 0;
      while (*f >= '0' && *f <= '9') width = width * 10 + (*f++ - '0');
      bool allocate = false;
      if (*f == 'm') {
        allocate = true;
        ++f;
      }
      Size size = Size::kInt;
      bool long_double = false;
      for (;; ++f) {
        if (*f == 'h')
          size = size == Size::kShort ? Size::kChar : Size::kShort;
        else if (*f == 'l')
          size = size == Size::kLong ? Size::kLongLong : Size::kLong;
        else if (*f == 'q' || *f == 'j')
          size = Size::kLongLong;
        else if (*f == 'z')
          size = Size::kSizeT;
        else if (*f == 't')
          size = Size::kPtrdiff;
        else if (*f == 'L')
          long_double = true;
        else
          break;
      }
      const char conv = *f;
      if (conv == 0) goto done;
      if (conv == 'n') {
        if (!suppress) StoreInt(&ap, size, static_cast<uint64_t>(s - in));
        continue;
      }
      if (conv != 'c' && conv != '[') {
        while (Space(*s)) ++s;
      }
      if (*s == 0) goto input_failure;
      if (width == 0) width = conv == 'c' ? 1 : SIZE_MAX;
      switch (conv) {
        case 'd':
        case 'i':
        case 'u':
        case 'o':
        case 'x':
        case 'X':
        case 'p': {
          const int base = conv == 'd' || conv == 'u' ? 10
                           : conv == 'o'              ? 8
                           : conv == 'i'              ? 0
                                                      : 16;
          char token[72];
          size_t n = 0;
          while (n < width && n + 1 < sizeof(token) && s[n] != 0 &&
                 !Space(s[n])) {
            token[n] = s[n];
            ++n;
          }
          token[n] = 0;
          char* end = token;
          const bool is_signed = conv == 'd' || conv == 'i';
          const uint64_t v =
              is_signed
                  ? static_cast<uint64_t>(CompartmentStrtoll(token, &end, base))
                  : CompartmentStrtoull(token, &end, base);
          if (end == token) goto done;
          s += end - token;
          converted = true;
          if (!suppress) {
            if (conv == 'p') {
              *va_arg(ap, void**) = reinterpret_cast<void*>(v);
            } else {
              StoreInt(&ap, size, v);
            }
            ++assigned;
          }
          break;
        }
        case 'e':
        case 'E':
        case 'f':
        case 'F':
        case 'g':
        case 'G':
        case 'a':
        case 'A': {
          double v;
          const size_t n = ParseFloat(s, width, &v);
          if (n == 0) goto done;
          s += n;
          converted = true;
          if (!suppress) {
            if (long_double)
              *va_arg(ap, long double*) = v;
            else if (size == Size::kLong)
              *va_arg(ap, double*) = v;
            else
              *va_arg(ap, float*) = static_cast<float>(v);
            ++assigned;
          }
          break;
        }
        case 's':
        case 'c':
        case '[': {
          bool set[256] = {};
          if (conv == '[') {
            ++f;
            const bool negate = *f == '^';
            if (negate) ++f;
            const char* first = f;
            for (; *f != 0 && (*f != ']' || f == first); ++f) {
              if (f[1] == '-' && f[2] != ']' && f[2] != 0) {
                for (int c = static_cast<unsigned char>(*f);
                     c <= static_cast<unsigned char>(f[2]); ++c) {
                  set[c] = true;
                }
                f += 2;
              } else {
                set[static_cast<unsigned char>(*f)] = true;
              }
            }
            if (*f == 0) goto done;
            if (negate) {
              for (bool& b : set) b = !b;
            }
          }
          size_t n = 0;
          while (n < width && s[n] != 0 &&
                 (conv == 'c' ||
                  (conv == 's' ? !Space(s[n])
                               : set[static_cast<unsigned char>(s[n])]))) {
            ++n;
          }
          if (n == 0 || (conv == 'c' && n < width)) goto done;
          converted = true;
          if (!suppress) {
            char* out;
            const size_t bytes = n + (conv == 'c' ? 0 : 1);
            if (allocate) {
              out = static_cast<char*>(malloc(bytes));
              if (out == nullptr) goto done;
              *va_arg(ap, char**) = out;
            } else {
              out = va_arg(ap, char*);
            }
            memcpy(out, s, n);
            if (conv != 'c') out[n] = 0;
            ++assigned;
          }
          s += n;
          break;
        }
        default:
          goto done;
      }
    }
  }
done:
  va_end(ap);
  return assigned;
input_failure:
  va_end(ap);
  return converted || assigned != 0 ? assigned : EOF;
}

int CompartmentSscanf(const char* s, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  const int r = CompartmentVsscanf(s, format, ap);
  va_end(ap);
  return r;
}

}  // namespace mpkbox::internal
