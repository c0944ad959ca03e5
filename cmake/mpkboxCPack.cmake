# A Debian package of what the install rules install: the library, its
# headers, the CMake package, mpkbox.pc and mpkbox-scan (tests, samples and
# benchmarks have no install rules). From the build tree:
#   cmake --build build --target package     (or: cd build && cpack -G DEB)
#   apt install ./build/mpkbox_*.deb
# Set CPACK_PACKAGE_CONTACT when configuring to name the maintainer.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mpkbox)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${MPKBOX_SUMMARY}")
if(NOT CPACK_PACKAGE_CONTACT)
  set(CPACK_PACKAGE_CONTACT "mpkbox maintainers <maintainers@mpkbox.invalid>")
endif()
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # mpkbox_VERSION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The long description, after the summary; CPack indents it as dpkg wants.
set(CPACK_PACKAGE_DESCRIPTION "mpkbox runs native code in in-process compartments, isolated with x86
memory protection keys (PKU). This package has the static library
libmpkbox.a, its C++20 headers, the CMake package (find_package(mpkbox)),
the pkg-config file (pkg-config --static mpkbox) and mpkbox-scan, which
lists what would keep an ELF file out of a compartment.")
# What linking libmpkbox.a needs (its headers include Abseil's; the library
# uses libunwind, jemalloc and libseccomp, found through pkg-config, and
# libZydis), and, for
# mpkbox-scan, what dpkg-shlibdeps finds.
set(CPACK_DEBIAN_PACKAGE_DEPENDS
  "libabsl-dev, libunwind-dev, libjemalloc-dev, libseccomp-dev, libzydis-dev, pkg-config")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
include(CPack)
