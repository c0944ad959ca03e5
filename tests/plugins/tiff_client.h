/* A TIFFClientOpen memory client's procs in one struct: TIFFClientOpen
   takes ten arguments and Compartment::Call passes at most six. */
#ifndef MPKBOX_TESTS_PLUGINS_TIFF_CLIENT_H_
#define MPKBOX_TESTS_PLUGINS_TIFF_CLIENT_H_

#include <tiffio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct TiffClientProcs {
  thandle_t handle;
  TIFFReadWriteProc read;
  TIFFReadWriteProc write;
  TIFFSeekProc seek;
  TIFFCloseProc close;
  TIFFSizeProc size;
};

/* TIFFClientOpen with these procs and no mapping. */
TIFF* tiff_client_open(const char* name, const char* mode,
                       const struct TiffClientProcs* procs);

#ifdef __cplusplus
}
#endif

#endif /* MPKBOX_TESTS_PLUGINS_TIFF_CLIENT_H_ */
