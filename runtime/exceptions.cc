// No C++ exception crosses a gate. The gate's frames carry this personality
// routine: an exception that unwinds out of compartment code or out of a host
// callback stops at the gate and ends the compartment call as a fault.
#include <cxxabi.h>
#include <unwind.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <typeinfo>

#include "trampolines/thread_block.h"
#include "trampolines/trampolines.h"


namespace {

constexpr uint64_t kGnuCxx = 0x474e5543432b2b00;  // "GNUCC++\0"
constexpr uint64_t kGnuCxxDependent = 0x474e5543432b2b01;

void RecordException(mpkbox::internal::ThreadBlock* tb, const char* what) {
  mpkbox::internal::RecordFault(tb, mpkbox::internal::FaultKind::kException,
                                {.what = what});
  tb->fault = 1;
}

}  // namespace

// Runs with the rights of whoever threw: compartment code included. It only
// redirects the unwind to the pad of the gate frame it was called for.
extern "C" _Unwind_Reason_Code mpkbox_gate_personality(
    int version, _Unwind_Action actions, uint64_t /*exception_class*/,
    _Unwind_Exception* exception, _Unwind_Context* context) {
  if (version != 1) return _URC_FATAL_PHASE1_ERROR;
  const uintptr_t start = _Unwind_GetRegionStart(context);
  uintptr_t pad = 0;
  if (start == reinterpret_cast<uintptr_t>(mpkbox_gate_enter)) {
    pad = reinterpret_cast<uintptr_t>(mpkbox_gate_exception_pad);
  } else if (start == reinterpret_cast<uintptr_t>(mpkbox_callback_entry)) {
    pad = reinterpret_cast<uintptr_t>(mpkbox_callback_exception_pad);
  } else {
    return _URC_CONTINUE_UNWIND;
  }
  if (actions & _UA_SEARCH_PHASE) return _URC_HANDLER_FOUND;
  _Unwind_SetGR(context, __builtin_eh_return_data_regno(0),
                reinterpret_cast<uintptr_t>(exception));
  _Unwind_SetIP(context, pad);
  return _URC_INSTALL_CONTEXT;
}

// From mpkbox_gate_exception_pad, with host rights on the host stack. The
// exception object was made by compartment code: it is not touched.
extern "C" void mpkbox_exception_left_compartment() {
  RecordException(mpkbox::internal::CurrentThreadBlock(),
                  "a C++ exception left compartment code");
}

// From mpkbox_callback_exception_pad: a host callback threw. The exception
// is the host's; it ends here, and so does the callback's frame.
extern "C" void mpkbox_exception_left_callback(_Unwind_Exception* exception) {
  mpkbox::internal::ThreadBlock* tb = mpkbox::internal::CurrentThreadBlock();
  char what[sizeof(tb->fault_info.what)] = "a C++ exception left a host callback";
  if (exception->exception_class == kGnuCxx ||
      exception->exception_class == kGnuCxxDependent) {
    abi::__cxa_begin_catch(exception);
    if (const std::type_info* type = abi::__cxa_current_exception_type()) {
      int status = 0;
      char* name = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
      snprintf(what, sizeof(what),
               "a C++ exception of type %s left a host callback",
               status == 0 && name != nullptr ? name : type->name());
      free(name);
    }
    abi::__cxa_end_catch();  // destroys it
  } else {
    _Unwind_DeleteException(exception);
  }
  // Pop the callback's frame; the gate's landing pops the call under it.
  mpkbox::internal::Frame& frame = tb->frames[--tb->depth];
  if (frame.kind != MPKBOX_FRAME_CALLBACK) abort();  // the gate's own state
  reinterpret_cast<mpkbox::internal::CallContext*>(frame.ctx)->top =
      frame.saved_top;
  RecordException(tb, what);
}
