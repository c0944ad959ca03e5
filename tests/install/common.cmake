# Shared by the tests/install/ scripts (cmake -P): run a step, install the
# build tree into a scratch prefix and check what landed there, check what
# the consumer printed.
cmake_minimum_required(VERSION 3.25)

# run(STEP COMMAND...): runs COMMAND, fails the test with its output if it
# fails; its standard output is left in last_output.
function(run step)
  execute_process(COMMAND ${ARGN}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    list(JOIN ARGN " " command)
    message(FATAL_ERROR "${step} failed (${rc}):\n${command}\n${out}\n${err}")
  endif()
  message(STATUS "${step}: ok")
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

# install_into(PREFIX): wipes WORK_DIR, installs MPKBOX_BUILD_DIR into PREFIX
# (configuration MPKBOX_CONFIG), and checks that the headers installed are
# exactly the public ones: every file under the source's include/mpkbox/,
# internal/ included, and nothing else.
function(install_into prefix)
  file(REMOVE_RECURSE "${WORK_DIR}")
  file(MAKE_DIRECTORY "${WORK_DIR}")
  set(config_args)
  if(MPKBOX_CONFIG)
    set(config_args --config "${MPKBOX_CONFIG}")
  endif()
  run("cmake --install" "${CMAKE_COMMAND}" --install "${MPKBOX_BUILD_DIR}"
      --prefix "${prefix}" ${config_args})

  file(GLOB_RECURSE want LIST_DIRECTORIES false
       RELATIVE "${MPKBOX_SOURCE_DIR}/include" "${MPKBOX_SOURCE_DIR}/include/*")
  file(GLOB_RECURSE got LIST_DIRECTORIES false
       RELATIVE "${prefix}/include" "${prefix}/include/*")
  list(SORT want)
  list(SORT got)
  if(NOT want STREQUAL got)
    set(missing ${want})
    set(extra ${got})
    list(REMOVE_ITEM missing ${got})
    list(REMOVE_ITEM extra ${want})
    message(FATAL_ERROR "the headers installed in ${prefix}/include are not "
      "the public ones: missing [${missing}], not public [${extra}]")
  endif()
  list(LENGTH got count)
  message(STATUS "installed headers: the ${count} under include/mpkbox/")
endfunction()

# check_consumer_output(TEXT): what tests/install/consumer/main.cc printed.
function(check_consumer_output text)
  message("${text}")
  if(text MATCHES "mpkbox consumer: built and linked .* no PKU here")
    return()  # no PKU: the package was found, compiled against and linked
  endif()
  if(NOT text MATCHES
     "mpkbox consumer: 2 \\* 3 \\* 7 = 42 in compartment 'consumer'")
    message(FATAL_ERROR "the consumer did not print the expected line")
  endif()
endfunction()
