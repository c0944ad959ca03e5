# Runs TARGET under gdb with breakpoints inside a compartment and in a host
# callback, and checks that both backtraces cross the gate to main.
find_program(GDB gdb)
if(NOT GDB)
  message(FATAL_ERROR "gdb is not installed (./build.sh installs it)")
endif()
execute_process(
  COMMAND ${GDB} -batch -nx
    -ex "handle SIG63 nostop noprint pass"
    -ex "break mpkbox_gdb_inside" -ex "break mpkbox_gdb_callback"
    -ex run -ex bt -ex continue -ex bt -ex continue
    ${TARGET}
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(out MATCHES "skipped, no PKU")
  message(STATUS "gdb backtrace: skipped, no PKU on this machine")
  return()
endif()
string(REPLACE "\n" " " flat "${out}")
# The two backtraces, each from its "#0" to the next breakpoint report.
string(FIND "${flat}" "Breakpoint 2," second)
string(SUBSTRING "${flat}" 0 ${second} first_bt)
string(SUBSTRING "${flat}" ${second} -1 second_bt)
# gdb may show inlined frames (Compartment::Call) in between: match order only.
# The gate's frames are marked as signal frames (they switch stacks), which gdb
# prints as "<signal handler called>".
set(gate "(<signal handler called>|mpkbox_gate_landing|mpkbox_gate_enter)")
set(entry "(<signal handler called>|mpkbox_callback_entry)")
set(inside "#0 [^#]*mpkbox_gdb_inside .*#1 [^#]*${gate}.*mpkbox_gdb_host_caller .*main \\(")
set(callback "#0 [^#]*mpkbox_gdb_callback .*#1 [^#]*${entry}.*#2 [^#]*mpkbox_gdb_inside .*${gate}.*mpkbox_gdb_host_caller .*main \\(")
if(NOT first_bt MATCHES "${inside}")
  message(FATAL_ERROR "gdb backtrace inside the compartment does not reach main:\n${out}\n${err}")
endif()
if(NOT second_bt MATCHES "${callback}")
  message(FATAL_ERROR "gdb backtrace in the callback does not reach main:\n${out}\n${err}")
endif()
if(NOT out MATCHES "result 42")
  message(FATAL_ERROR "the program did not finish under gdb:\n${out}\n${err}")
endif()
message(STATUS "gdb unwound across the gate in both directions")
