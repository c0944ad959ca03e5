/* chunk_parser: a small PNG chunk walker with a real bug, loaded into the
   hardened_parser's compartment next to libpng.

   It counts a PNG's chunks and keeps the keyword of the first tEXt chunk.
   The bug is the classic one: note_text copies the chunk into a stack
   buffer sized for a keyword (at most 79 bytes) with the length the file
   claims, and the chunk holds the text too. A longer chunk overwrites the
   rest of the frame, the return address, the callers' frames and then
   whatever lies above the compartment's stack. CMake builds it without
   stack protector or fortify, so nothing inside catches the overflow. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Shared with the host (hardened_parser.cc): compartment memory the host
   allocated and reads back after the call. */
struct chunk_summary {
  uint32_t chunks;
  uint32_t text_chunks;
  char first_keyword[80];
};

static uint32_t read_be32(const unsigned char* p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

/* tEXt is "keyword\0text"; the keyword has 1 to 79 bytes. */
static __attribute__((noinline)) void note_text(const unsigned char* data,
                                                uint32_t length,
                                                struct chunk_summary* out) {
  char text[80];
  memcpy(text, data, length); /* BUG: length is the file's, unchecked */
  if (out->text_chunks++ == 0) {
    size_t n = strnlen(text, sizeof(text) - 1);
    memcpy(out->first_keyword, text, n);
    out->first_keyword[n] = '\0';
  }
}

/* Returns the number of complete chunks, or -1 without a PNG signature. A
   truncated last chunk ends the walk: judging the image is libpng's job. */
int chunk_scan(const unsigned char* png, size_t size,
               struct chunk_summary* out) {
  static const unsigned char kSignature[8] = {0x89, 'P',  'N',  'G',
                                              '\r', '\n', 0x1a, '\n'};
  memset(out, 0, sizeof(*out));
  if (size < sizeof(kSignature) || memcmp(png, kSignature, 8) != 0) return -1;
  size_t pos = 8;
  while (size - pos >= 12) {
    uint32_t length = read_be32(png + pos);
    if (length > size - pos - 12) break; /* the chunk must be in the file */
    if (memcmp(png + pos + 4, "tEXt", 4) == 0) {
      note_text(png + pos + 8, length, out);
    }
    out->chunks++;
    if (memcmp(png + pos + 4, "IEND", 4) == 0) break;
    pos += 12 + (size_t)length;
  }
  return (int)out->chunks;
}
