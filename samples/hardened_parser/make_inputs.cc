// make_inputs DIR: writes the hardened_parser's test images into DIR.
//
// A build-time tool: it runs on the host with the host's libpng and zlib
// (linked), never inside a compartment. The file name says what the
// hardened_parser must make of each file: ok_* decode, bad_* are rejected
// cleanly (by libpng or by the host's checks), evil_* attack the parser and
// must be contained.
#include <png.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;

// Pixels made by pixel(x, y, channel).
template <typename F>
Bytes Encode(int width, int height, uint32_t format, F pixel) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = width;
  image.height = height;
  image.format = format;
  const int channels = PNG_IMAGE_PIXEL_CHANNELS(format);
  Bytes pixels(PNG_IMAGE_SIZE(image));
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c) {
        pixels[(static_cast<size_t>(y) * width + x) * channels + c] =
            static_cast<uint8_t>(pixel(x, y, c));
      }
    }
  }
  png_alloc_size_t size = 0;
  png_image_write_to_memory(&image, nullptr, &size, 0, pixels.data(), 0,
                            nullptr);
  Bytes png(size);
  if (!png_image_write_to_memory(&image, png.data(), &size, 0, pixels.data(), 0,
                                 nullptr)) {
    std::fprintf(stderr, "make_inputs: libpng: %s\n", image.message);
    return {};
  }
  png.resize(size);
  return png;
}

void PutBe32(uint32_t v, uint8_t* p) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

// A chunk (length, type, data, CRC) inserted right after IHDR, which always
// ends at byte 33.
Bytes WithChunk(Bytes png, const char type[4], const Bytes& data) {
  Bytes chunk(12 + data.size());
  PutBe32(static_cast<uint32_t>(data.size()), &chunk[0]);
  std::copy(type, type + 4, &chunk[4]);
  std::copy(data.begin(), data.end(), &chunk[8]);
  uLong crc = crc32(0, &chunk[4], static_cast<uInt>(4 + data.size()));
  PutBe32(static_cast<uint32_t>(crc), &chunk[8 + data.size()]);
  png.insert(png.begin() + 33, chunk.begin(), chunk.end());
  return png;
}

Bytes Text(const std::string& keyword, const std::string& text) {
  Bytes b(keyword.begin(), keyword.end());
  b.push_back(0);
  b.insert(b.end(), text.begin(), text.end());
  return b;
}

// IHDR claims width x height; its CRC is made to match.
Bytes WithDimensions(Bytes png, uint32_t width, uint32_t height) {
  PutBe32(width, &png[16]);
  PutBe32(height, &png[20]);
  PutBe32(static_cast<uint32_t>(crc32(0, &png[12], 17)), &png[29]);
  return png;
}

bool Write(const std::string& dir, const char* name, const Bytes& bytes) {
  const std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  bool ok = f != nullptr && !bytes.empty() &&
            std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  if (f != nullptr) ok = std::fclose(f) == 0 && ok;
  if (!ok) std::fprintf(stderr, "make_inputs: cannot write %s\n", path.c_str());
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_inputs DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  const Bytes gradient =
      Encode(64, 48, PNG_FORMAT_RGB, [](int x, int y, int c) {
        return c == 0 ? x * 4 : c == 1 ? y * 5 : 128;
      });
  const Bytes checker =
      Encode(200, 120, PNG_FORMAT_RGBA, [](int x, int y, int c) {
        return c == 3 ? 255 : ((x / 20 + y / 20) % 2) * 255;
      });
  const Bytes gray =
      Encode(1, 1, PNG_FORMAT_GRAY, [](int, int, int) { return 77; });

  // tEXt chunks longer than chunk_parser's 80-byte stack buffer. 112 bytes
  // reach just the parser's return address (0x4141414141414141 then); 16 KiB
  // run over its frames and on past the top of the compartment's stack into
  // the host memory mapped above it.
  const char kKeyword[] = "Comment";
  Bytes smash(112, 'A');
  std::copy(kKeyword, kKeyword + sizeof(kKeyword), smash.begin());
  Bytes flood(16 << 10, 'A');
  std::copy(kKeyword, kKeyword + sizeof(kKeyword), flood.begin());

  Bytes truncated = checker;
  truncated.resize(truncated.size() / 2);
  Bytes bad_crc = gradient;
  bad_crc[20] ^= 0x55;  // IHDR's height, so its CRC no longer matches
  const char kNotPng[] = "GIF89a: not a PNG at all\n";

  bool ok = true;
  ok &= Write(dir, "ok_gradient.png", gradient);
  ok &= Write(dir, "ok_checker.png", checker);
  ok &= Write(dir, "ok_pixel.png", gray);
  ok &= Write(dir, "ok_with_text.png",
              WithChunk(gradient, "tEXt", Text("Title", "mpkbox sample")));
  ok &= Write(dir, "bad_truncated.png", truncated);
  ok &= Write(dir, "bad_crc.png", bad_crc);
  ok &= Write(dir, "bad_not_a_png.png",
              Bytes(kNotPng, kNotPng + sizeof(kNotPng) - 1));
  ok &= Write(dir, "bad_huge_dimensions.png",
              WithDimensions(gray, 1000000, 1000000));
  ok &= Write(dir, "evil_return_address.png", WithChunk(gray, "tEXt", smash));
  ok &= Write(dir, "evil_text_overflow.png", WithChunk(gray, "tEXt", flood));
  return ok ? 0 : 1;
}
