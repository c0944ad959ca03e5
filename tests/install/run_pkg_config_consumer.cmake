# cmake -P script for the Install.PkgConfigConsumer test: installs the build
# tree into a scratch prefix, then compiles and links tests/install/consumer's
# main.cc with one plain compiler command, as a Makefile would:
#   c++ -Wall -Wextra -Werror main.cc -o consumer \
#     $(pkg-config --cflags --libs --static mpkbox)
# with PKG_CONFIG_PATH at the scratch prefix, and runs it. Inputs (-D):
#   MPKBOX_SOURCE_DIR    the top-level source tree
#   MPKBOX_BUILD_DIR     the top-level build tree to install
#   MPKBOX_CONFIG        build configuration (may be empty)
#   LIBDIR               CMAKE_INSTALL_LIBDIR (mpkbox.pc is in LIBDIR/pkgconfig)
#   CONSUMER_SOURCE_DIR  tests/install/consumer
#   WORK_DIR             scratch directory, wiped first
#   CXX_COMPILER         the C++ compiler mpkbox was built with
#   PKG_CONFIG           the pkg-config program
#   READELF              readelf
#   TLS_LOCAL_EXEC       ON when mpkbox was built with MPKBOX_TLS_LOCAL_EXEC
#   LINK_OPTIONS         the mpkbox target's INTERFACE_LINK_OPTIONS,
#                        separated by spaces
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)

foreach(var MPKBOX_SOURCE_DIR MPKBOX_BUILD_DIR LIBDIR CONSUMER_SOURCE_DIR
            WORK_DIR CXX_COMPILER PKG_CONFIG READELF LINK_OPTIONS)
  if(NOT ${var})
    message(FATAL_ERROR "run_pkg_config_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()

set(prefix "${WORK_DIR}/prefix")

# 1. Install the build tree into the scratch prefix.
install_into("${prefix}")

# 2. Ask pkg-config, which must find the mpkbox.pc just installed.
set(pkg_config "${CMAKE_COMMAND}" -E env
    "PKG_CONFIG_PATH=${prefix}/${LIBDIR}/pkgconfig" "${PKG_CONFIG}")
run("pkg-config --variable=pcfiledir" ${pkg_config} --variable=pcfiledir mpkbox)
string(STRIP "${last_output}" pcfiledir)
file(REAL_PATH "${prefix}" real_prefix)
file(REAL_PATH "${pcfiledir}" real_pcfiledir)
string(FIND "${real_pcfiledir}/" "${real_prefix}/" at)
if(NOT at EQUAL 0)
  message(FATAL_ERROR "pkg-config found mpkbox.pc in ${pcfiledir}, not in ${prefix}")
endif()
run("pkg-config --cflags --libs --static" ${pkg_config}
    --cflags --libs --static mpkbox)
string(STRIP "${last_output}" flags_text)
message("pkg-config --cflags --libs --static mpkbox:\n${flags_text}")
separate_arguments(flags UNIX_COMMAND "${flags_text}")

# What the flags must say, besides what compiling and running shows: the
# mpkbox target's link options and TLS model, and libgcc_s ahead of libunwind
# (libunwind.so also exports _Unwind_*; C++ exceptions use libgcc's).
separate_arguments(expected UNIX_COMMAND "${LINK_OPTIONS}")
list(APPEND expected -std=c++20 -lmpkbox -ldl -lgcc_s -lunwind -ljemalloc
     -labsl_status)
if(TLS_LOCAL_EXEC)
  list(APPEND expected -DMPKBOX_TLS_LOCAL_EXEC)
elseif("-DMPKBOX_TLS_LOCAL_EXEC" IN_LIST flags)
  message(FATAL_ERROR "-DMPKBOX_TLS_LOCAL_EXEC, but mpkbox was built without it")
endif()
foreach(flag IN LISTS expected)
  if(NOT flag IN_LIST flags)
    message(FATAL_ERROR "pkg-config's flags for mpkbox lack ${flag}")
  endif()
endforeach()
list(FIND flags -lgcc_s gcc_s_at)
list(FIND flags -lunwind unwind_at)
if(NOT gcc_s_at LESS unwind_at)
  message(FATAL_ERROR "pkg-config puts -lunwind before -lgcc_s")
endif()

# 3. One compiler command line: no -std, no -I, no -l but pkg-config's.
set(consumer "${WORK_DIR}/consumer")
run("compile and link consumer" "${CXX_COMPILER}" -Wall -Wextra -Werror
    "${CONSUMER_SOURCE_DIR}/main.cc" -o "${consumer}" ${flags})

# -Wl,-z,now took: every symbol bound at load.
run("readelf -d consumer" "${READELF}" -d "${consumer}")
if(NOT last_output MATCHES "BIND_NOW|FLAGS[^\n]* NOW")
  message(FATAL_ERROR "the consumer is not linked with -z now:\n${last_output}")
endif()

# 4. Run it and check what it printed.
run("run consumer" "${consumer}")
check_consumer_output("${last_output}")
