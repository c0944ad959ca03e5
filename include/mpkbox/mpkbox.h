// mpkbox: run untrusted native code in in-process compartments isolated with
// memory protection keys. Everything the API offers is reachable from here.
#ifndef MPKBOX_MPKBOX_H_
#define MPKBOX_MPKBOX_H_

#include "mpkbox/callback.h"
#include "mpkbox/compartment.h"
#include "mpkbox/compartment_options.h"
#include "mpkbox/compartment_pool.h"
#include "mpkbox/fault_report.h"
#include "mpkbox/runtime.h"
#include "mpkbox/syscall_policy.h"
#include "mpkbox/tainted.h"

#endif  // MPKBOX_MPKBOX_H_
