# cmake -P script for the Install.FindPackageConsumer test. Inputs (-D):
#   MPKBOX_SOURCE_DIR    the top-level source tree
#   MPKBOX_BUILD_DIR     the top-level build tree to install
#   MPKBOX_CONFIG        build configuration (may be empty)
#   CONSUMER_SOURCE_DIR  tests/install/consumer
#   WORK_DIR             scratch directory, wiped first
#   GENERATOR            CMake generator for the consumer
#   CXX_COMPILER         the C++ compiler mpkbox was built with
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/common.cmake)

foreach(var MPKBOX_SOURCE_DIR MPKBOX_BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR
            GENERATOR CXX_COMPILER)
  if(NOT ${var})
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()

set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/consumer-build")

# 1. Install the build tree into the scratch prefix.
install_into("${prefix}")

# 2. Configure the consumer against that prefix only: no package registry,
#    so a stale build tree or another install cannot stand in for it.
run("configure consumer" "${CMAKE_COMMAND}"
    -S "${CONSUMER_SOURCE_DIR}" -B "${consumer_build}" -G "${GENERATOR}"
    "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
    "-DCMAKE_BUILD_TYPE=${MPKBOX_CONFIG}"
    "-DCMAKE_PREFIX_PATH=${prefix}"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)

# The package must have come from the prefix just installed.
file(STRINGS "${consumer_build}/CMakeCache.txt" dir_line REGEX "^mpkbox_DIR:")
string(REGEX REPLACE "^mpkbox_DIR:[A-Z]+=" "" mpkbox_dir "${dir_line}")
file(REAL_PATH "${prefix}" real_prefix)
file(REAL_PATH "${mpkbox_dir}" real_dir)
string(FIND "${real_dir}/" "${real_prefix}/" at)
if(NOT at EQUAL 0)
  message(FATAL_ERROR
    "find_package(mpkbox) found ${mpkbox_dir}, not the package in ${prefix}")
endif()

# 3. Build it.
set(config_args)
if(MPKBOX_CONFIG)
  set(config_args --config "${MPKBOX_CONFIG}")
endif()
run("build consumer" "${CMAKE_COMMAND}" --build "${consumer_build}" ${config_args})

# 4. Run it and check what it printed.
find_program(consumer NAMES consumer
  PATHS "${consumer_build}" "${consumer_build}/${MPKBOX_CONFIG}" NO_DEFAULT_PATH)
if(NOT consumer)
  message(FATAL_ERROR "no consumer binary under ${consumer_build}")
endif()
run("run consumer" "${consumer}")
check_consumer_output("${last_output}")
