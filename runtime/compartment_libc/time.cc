// Broken-down time for loaded code, always in UTC. glibc's localtime_r,
// gmtime_r and mktime take the time-zone lock and may load /etc/localtime
// (key-0 state, a file); these compute with Abseil's civil-time arithmetic
// (pure constexpr code: no state, no lock) and write only the caller's
// struct tm. Local time is UTC ("UTC"), as in a process without a zone.
//
// strftime is glibc's strftime_l in the C locale, on a copy of the struct
// that always names its zone (an empty one sends %Z to tzset, the lock) and
// with %s spelled out here (glibc's calls mktime).
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cstdint>

#include "absl/time/civil_time.h"
#include "runtime/compartment_libc/bindings.h"
#include "runtime/compartment_libc/compartment_libc.h"
#include "trampolines/trampolines.h"

namespace mpkbox::internal {
namespace {

constexpr char kUtc[] = "UTC";
constexpr char kGmt[] = "GMT";

constexpr absl::CivilSecond kEpoch(1970, 1, 1, 0, 0, 0);

int WeekdayOf(absl::CivilSecond cs) {
  switch (absl::GetWeekday(cs)) {
    case absl::Weekday::sunday:
      return 0;
    case absl::Weekday::monday:
      return 1;
    case absl::Weekday::tuesday:
      return 2;
    case absl::Weekday::wednesday:
      return 3;
    case absl::Weekday::thursday:
      return 4;
    case absl::Weekday::friday:
      return 5;
    case absl::Weekday::saturday:
      return 6;
  }
  return 0;
}

// The broken-down form of `cs` into `tm`; false if its year is no int.
bool Fill(absl::CivilSecond cs, const char* zone, struct tm* tm) {
  const absl::civil_year_t year = cs.year() - 1900;
  if (year < INT_MIN || year > INT_MAX) return false;
  tm->tm_year = static_cast<int>(year);
  tm->tm_mon = cs.month() - 1;
  tm->tm_mday = cs.day();
  tm->tm_hour = cs.hour();
  tm->tm_min = cs.minute();
  tm->tm_sec = cs.second();
  tm->tm_wday = WeekdayOf(cs);
  tm->tm_yday = absl::GetYearDay(cs) - 1;
  tm->tm_isdst = 0;
  tm->tm_gmtoff = 0;
  tm->tm_zone = zone;
  return true;
}

// Seconds since the epoch of a struct tm's fields, normalized as mktime
// normalizes them (out-of-range fields carry), and the normalized civil
// time.
absl::CivilSecond Civil(const struct tm& tm) {
  return absl::CivilSecond(absl::civil_year_t{tm.tm_year} + 1900,
                           int64_t{tm.tm_mon} + 1, tm.tm_mday, tm.tm_hour,
                           tm.tm_min, tm.tm_sec);
}

struct tm* Broken(const time_t* t, struct tm* tm, const char* zone) {
  // kEpoch + *t: Abseil's civil arithmetic is exact for any int64.
  if (!Fill(kEpoch + *t, zone, tm)) {
    *mpkbox_compartment_errno_location() = EOVERFLOW;
    return nullptr;
  }
  return tm;
}

struct tm* GmtimeR(const time_t* t, struct tm* tm) {
  return Broken(t, tm, kGmt);
}
struct tm* LocaltimeR(const time_t* t, struct tm* tm) {
  return Broken(t, tm, kUtc);
}

time_t FromBroken(struct tm* tm, const char* zone) {
  const absl::CivilSecond cs = Civil(*tm);
  if (!Fill(cs, zone, tm)) {
    *mpkbox_compartment_errno_location() = EOVERFLOW;
    return -1;
  }
  return static_cast<time_t>(cs - kEpoch);
}

time_t Timegm(struct tm* tm) { return FromBroken(tm, kGmt); }
time_t Mktime(struct tm* tm) { return FromBroken(tm, kUtc); }  // tm_isdst: no DST

void Tzset() {}  // the zone is UTC and never changes

char* CtimeR(const time_t* t, char* buf) {
  struct tm tm;
  if (LocaltimeR(t, &tm) == nullptr) return nullptr;
  return asctime_r(&tm, buf);  // glibc's: the C locale's names, the buffer
}

size_t Strftime(char* out, size_t max, const char* format,
                const struct tm* tm) {
  struct tm copy = *tm;
  if (copy.tm_zone == nullptr || copy.tm_zone[0] == '\0') copy.tm_zone = kUtc;
  // %s becomes its digits; every other conversion stays for glibc.
  char spelled[1024];
  size_t n = 0;
  for (const char* p = format; *p != '\0';) {
    const char* start = p;
    if (*p == '%') {
      ++p;
      while (*p != '\0' && strchr("_-0^#", *p) != nullptr) ++p;
      while (*p >= '0' && *p <= '9') ++p;
      if (*p == 'E' || *p == 'O') ++p;
      if (*p == 's') {
        struct tm scratch = *tm;
        const int w = snprintf(spelled + n, sizeof(spelled) - n, "%lld",
                               static_cast<long long>(Timegm(&scratch)));
        if (w < 0 || static_cast<size_t>(w) >= sizeof(spelled) - n) return 0;
        n += static_cast<size_t>(w);
        ++p;
        continue;
      }
      if (*p != '\0') ++p;
    } else {
      ++p;
    }
    const size_t len = static_cast<size_t>(p - start);
    if (len >= sizeof(spelled) - n) return 0;  // a format past 1 KiB
    memcpy(spelled + n, start, len);
    n += len;
  }
  spelled[n] = '\0';
  return strftime_l(out, max, spelled, &copy,
                    static_cast<locale_t>(
                        const_cast<void*>(mpkbox_ambient.c_locale)));
}

size_t StrftimeL(char* out, size_t max, const char* format,
                 const struct tm* tm, locale_t) {
  return Strftime(out, max, format, tm);
}

constexpr char kUtcArithmetic[] =
    "UTC by pure civil-time arithmetic; writes only the caller's struct tm";
constexpr char kFormat[] =
    "glibc's strftime_l in the C locale on a copy whose zone is named and "
    "whose %s is spelled out (no tzset, no mktime): writes only the buffer";

}  // namespace

absl::Span<const LibcBinding> TimeBindings() {
  static const LibcBinding kBindings[] = {
      {"gmtime_r", LibcFn(&GmtimeR), kUtcArithmetic},
      {"__gmtime_r", LibcFn(&GmtimeR), kUtcArithmetic},
      {"localtime_r", LibcFn(&LocaltimeR), kUtcArithmetic},
      {"__localtime_r", LibcFn(&LocaltimeR), kUtcArithmetic},
      {"timegm", LibcFn(&Timegm), kUtcArithmetic},
      {"mktime", LibcFn(&Mktime), kUtcArithmetic},
      {"timelocal", LibcFn(&Mktime), kUtcArithmetic},
      {"ctime_r", LibcFn(&CtimeR),
       "UTC by civil-time arithmetic, then glibc's asctime_r into the "
       "caller's buffer"},
      {"asctime_r", LibcFn(&asctime_r),
       "glibc's: the C locale's day and month names into the caller's buffer"},
      {"difftime", LibcFn(&difftime), "arithmetic"},
      {"tzset", LibcFn(&Tzset), "does nothing: the zone is UTC"},
      {"strftime", LibcFn(&Strftime), kFormat},
      {"strftime_l", LibcFn(&StrftimeL), kFormat},
      {"__strftime_l", LibcFn(&StrftimeL), kFormat},
  };
  return kBindings;
}

}  // namespace mpkbox::internal
