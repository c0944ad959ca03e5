// Parsing for loaded code with compartment rights: the strtol family
// (format.cc) and sscanf (scan.cc), errno in the compartment's slot.
#ifndef MPKBOX_RUNTIME_COMPARTMENT_LIBC_SCAN_H_
#define MPKBOX_RUNTIME_COMPARTMENT_LIBC_SCAN_H_

#include <stdarg.h>

namespace mpkbox::internal {

double CompartmentStrtod(const char* s, char** end);
long long CompartmentStrtoll(const char* s, char** end, int base);
unsigned long long CompartmentStrtoull(const char* s, char** end, int base);
int CompartmentVsscanf(const char* s, const char* format, va_list ap);
int CompartmentSscanf(const char* s, const char* format, ...);

}  // namespace mpkbox::internal

#endif  // MPKBOX_RUNTIME_COMPARTMENT_LIBC_SCAN_H_
