# mpkbox.pc for build systems without CMake, installed to
# ${CMAKE_INSTALL_LIBDIR}/pkgconfig. Everything in it is read from the mpkbox
# target, so it says what find_package(mpkbox) says:
#   Cflags   include/, the C++ standard of INTERFACE_COMPILE_FEATURES,
#            INTERFACE_COMPILE_DEFINITIONS (MPKBOX_TLS_LOCAL_EXEC when built
#            with it) and INTERFACE_COMPILE_OPTIONS
#   Libs     INTERFACE_LINK_OPTIONS (-Wl,-z,now, -Wl,--undefined=...), then
#            -lmpkbox
#   Requires / Requires.private
#            the PUBLIC / PRIVATE link libraries that have a .pc file:
#            absl::NAME is absl_NAME, the pkg_check_modules targets their
#            module
#   Libs.private
#            the plain library names (dl, gcc_s), as -l flags
# A link item or property this cannot express stops the configure, so the
# two never drift apart. The prefix is relative to the .pc file
# (${pcfiledir}): the install prefix may change after configuring
# (cmake --install --prefix, cpack).

# The .pc module of each imported target mpkbox links that is not absl's.
set(_mpkbox_pc_module_PkgConfig::MPKBOX_LIBUNWIND libunwind)
set(_mpkbox_pc_module_PkgConfig::MPKBOX_JEMALLOC jemalloc)
set(_mpkbox_pc_module_PkgConfig::MPKBOX_SECCOMP libseccomp)

function(_mpkbox_pc_property out property)
  get_target_property(value mpkbox ${property})
  if(NOT value)
    set(value "")
  endif()
  set(${out} "${value}" PARENT_SCOPE)
endfunction()

function(_mpkbox_pc_write)
  _mpkbox_pc_property(features INTERFACE_COMPILE_FEATURES)
  _mpkbox_pc_property(definitions INTERFACE_COMPILE_DEFINITIONS)
  _mpkbox_pc_property(options INTERFACE_COMPILE_OPTIONS)
  _mpkbox_pc_property(link_options INTERFACE_LINK_OPTIONS)
  _mpkbox_pc_property(libraries LINK_LIBRARIES)
  _mpkbox_pc_property(interface INTERFACE_LINK_LIBRARIES)
  foreach(value IN LISTS features definitions options link_options libraries)
    if(value MATCHES "\\$<|^SHELL:|^LINKER:")
      message(FATAL_ERROR "mpkbox.pc: cannot express '${value}' of the "
        "mpkbox target; extend cmake/mpkboxPkgConfig.cmake")
    endif()
  endforeach()

  set(cflags)
  foreach(feature IN LISTS features)
    if(feature MATCHES "^cxx_std_([0-9]+)$")
      if(CMAKE_CXX_EXTENSIONS)
        list(APPEND cflags "-std=gnu++${CMAKE_MATCH_1}")
      else()
        list(APPEND cflags "-std=c++${CMAKE_MATCH_1}")
      endif()
    else()
      message(FATAL_ERROR "mpkbox.pc: cannot express compile feature "
        "'${feature}' of the mpkbox target")
    endif()
  endforeach()
  foreach(definition IN LISTS definitions)
    list(APPEND cflags "-D${definition}")
  endforeach()
  list(APPEND cflags ${options})

  # INTERFACE_LINK_LIBRARIES has the PUBLIC ones as they are and the PRIVATE
  # ones as $<LINK_ONLY:...>.
  set(requires)
  set(requires_private)
  set(libs_private)
  foreach(library IN LISTS libraries)
    if(library MATCHES "^absl::(.+)$")
      set(module "absl_${CMAKE_MATCH_1}")
    elseif(DEFINED _mpkbox_pc_module_${library})
      set(module "${_mpkbox_pc_module_${library}}")
    elseif(library MATCHES "^[A-Za-z0-9_.+-]+$" AND NOT TARGET ${library})
      list(APPEND libs_private "-l${library}")
      continue()
    else()
      message(FATAL_ERROR "mpkbox.pc: no pkg-config module for the link "
        "item '${library}' of the mpkbox target; name it in "
        "cmake/mpkboxPkgConfig.cmake")
    endif()
    if(library IN_LIST interface)
      list(APPEND requires "${module}")
    else()
      list(APPEND requires_private "${module}")
    endif()
  endforeach()

  file(RELATIVE_PATH to_prefix
       "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
  string(REGEX REPLACE "/$" "" to_prefix "${to_prefix}")
  if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
    set(MPKBOX_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")  # not relocatable
  else()
    set(MPKBOX_PC_PREFIX "\${pcfiledir}/${to_prefix}")
  endif()
  foreach(kind LIBDIR INCLUDEDIR)
    if(IS_ABSOLUTE "${CMAKE_INSTALL_${kind}}")
      set(MPKBOX_PC_${kind} "${CMAKE_INSTALL_${kind}}")
    else()
      set(MPKBOX_PC_${kind} "\${prefix}/${CMAKE_INSTALL_${kind}}")
    endif()
  endforeach()
  list(JOIN cflags " " MPKBOX_PC_CFLAGS)
  list(JOIN link_options " " MPKBOX_PC_LINK_OPTIONS)
  list(JOIN requires ", " MPKBOX_PC_REQUIRES)
  list(JOIN requires_private ", " MPKBOX_PC_REQUIRES_PRIVATE)
  list(JOIN libs_private " " MPKBOX_PC_LIBS_PRIVATE)
  configure_file(${CMAKE_CURRENT_LIST_DIR}/mpkbox.pc.in
                 ${PROJECT_BINARY_DIR}/mpkbox.pc @ONLY)
endfunction()

_mpkbox_pc_write()
install(FILES ${PROJECT_BINARY_DIR}/mpkbox.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
