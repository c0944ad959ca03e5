/* loader_library_test.cc: TIFFClientOpen of Debian's libtiff (DT_NEEDED),
   unmodified, called inside through this six-argument shim. The same file
   is compiled into the test to open natively. */
#include "tiff_client.h"

TIFF* tiff_client_open(const char* name, const char* mode,
                       const struct TiffClientProcs* procs) {
  return TIFFClientOpen(name, mode, procs->handle, procs->read, procs->write,
                        procs->seek, procs->close, procs->size, NULL, NULL);
}
