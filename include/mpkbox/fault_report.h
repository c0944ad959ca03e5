// FaultReport: what went wrong in a compartment's last failed call.
#ifndef MPKBOX_FAULT_REPORT_H_
#define MPKBOX_FAULT_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mpkbox {

struct FaultReport {
  std::string what;      // one line: the fault, the address and its key
  int signal = 0;        // SIGSEGV, SIGILL, ... (0 for an exception)
  int code = 0;          // si_code, e.g. SEGV_PKUERR
  uintptr_t address = 0; // faulting data address (si_addr)
  int pkey = -1;         // key of the page at `address`, -1 if unmapped
  std::string key_owner; // "host", "trusted", a compartment's name, ...
  uintptr_t ip = 0;      // instruction pointer
  std::string compartment;
  std::vector<std::string> backtrace;  // symbolized compartment frames
  // Set when compartment code called exit, _exit, _Exit or quick_exit: the
  // status it passed. Only its call ended; the process goes on.
  std::optional<int> exit_status;
};

}  // namespace mpkbox

#endif  // MPKBOX_FAULT_REPORT_H_
