// hardened_parser: decodes untrusted PNG files with Debian's libpng, run in a
// compartment.
//
//   hardened_parser [INPUT_DIR]
//
// libpng16.so.16 (with its own copy of libz) and chunk_parser.so, a small
// chunk walker with a real stack overflow, are loaded into one compartment
// with Compartment::Load; neither is linked into this program. For each
// file the host copies the bytes into compartment memory, lets chunk_parser
// list the chunks, then decodes with libpng's simplified API
// (png_image_begin_read_from_memory, png_image_finish_read). Everything that
// comes back (return values, the png_image libpng filled in, the chunk
// summary) is checked before use: dimensions within the host's limits,
// strings NUL-terminated inside their arrays. A fault is reported (kind,
// address, key) and the compartment Reset, and the next file decodes as
// usual.
//
// The build writes INPUT_DIR (make_inputs.cc). The file names say what must
// happen: ok_* decode; bad_* are rejected cleanly, by libpng (a bad CRC, a
// truncated file, not a PNG) or by the host (huge dimensions); evil_* carry
// a tEXt chunk that overflows chunk_parser's stack buffer and must be
// contained.
//
// Exit code: 0 when every outcome is the expected one, 1 otherwise, 2
// without PKU.
#include <png.h>
#include <signal.h>
#include <string.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "mpkbox/mpkbox.h"

#ifndef CHUNK_PARSER_PATH
#error "CHUNK_PARSER_PATH: the path of chunk_parser.so (set by CMake)"
#endif
#ifndef DEFAULT_INPUT_DIR
#define DEFAULT_INPUT_DIR "inputs"
#endif

namespace {

// Limits the host puts on what libpng reports, whatever libpng accepts.
constexpr uint32_t kMaxSide = 8192;
constexpr uint64_t kMaxPixels = uint64_t{4} << 20;  // 16 MiB as RGBA
constexpr size_t kMaxFileBytes = size_t{16} << 20;

// chunk_parser.c's struct chunk_summary.
struct ChunkSummary {
  uint32_t chunks;
  uint32_t text_chunks;
  char first_keyword[80];
};

using ChunkScanFn = int(const unsigned char*, size_t, ChunkSummary*);

enum class Verdict { kDecoded, kRejected, kContained };

struct Outcome {
  Verdict verdict;
  std::string detail;  // "64x48 ...", libpng's message, or the fault
};

// Text from a fixed array in compartment memory: used only if NUL-terminated
// inside the array; unprintable bytes are replaced.
std::string BoundedString(const char* array, size_t size) {
  const void* end = std::memchr(array, '\0', size);
  if (end == nullptr) return "(not NUL-terminated: ignored)";
  std::string s(array, static_cast<const char*>(end));
  for (char& c : s) {
    if (!std::isprint(static_cast<unsigned char>(c))) c = '?';
  }
  return s;
}

// Compartment memory for one decode, freed when the decode ends (before any
// Reset, which drops the heap and could reuse the addresses).
class Scratch {
 public:
  explicit Scratch(mpkbox::Compartment& box) : box_(box) {}
  ~Scratch() {
    for (void* p : owned_) box_.Free(p);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  template <typename T>
  absl::StatusOr<T*> Get(size_t count = 1) {
    absl::StatusOr<void*> p = box_.Allocate(sizeof(T) * count, alignof(T));
    if (!p.ok()) return p.status();
    owned_.push_back(*p);
    std::memset(*p, 0, sizeof(T) * count);
    return static_cast<T*>(*p);
  }

 private:
  mpkbox::Compartment& box_;
  std::vector<void*> owned_;
};

class PngDecoder {
 public:
  static absl::StatusOr<std::unique_ptr<PngDecoder>> Create() {
    absl::StatusOr<std::unique_ptr<mpkbox::Compartment>> box =
        mpkbox::Compartment::Create(
            {.name = "png-decoder", .heap_limit_bytes = size_t{128} << 20});
    if (!box.ok()) return box.status();
    auto d = std::unique_ptr<PngDecoder>(new PngDecoder(*std::move(box)));
    if (absl::Status s = d->box_->Load("libpng16.so.16"); !s.ok()) return s;
    if (absl::Status s = d->box_->Load(CHUNK_PARSER_PATH); !s.ok()) return s;
    // Lookup results stay valid across Reset: the objects come back at the
    // same addresses.
    auto begin = d->box_->Lookup<decltype(png_image_begin_read_from_memory)>(
        "png_image_begin_read_from_memory");
    auto finish = d->box_->Lookup<decltype(png_image_finish_read)>(
        "png_image_finish_read");
    auto release = d->box_->Lookup<decltype(png_image_free)>("png_image_free");
    auto scan = d->box_->Lookup<ChunkScanFn>("chunk_scan");
    for (const absl::Status& s :
         {begin.status(), finish.status(), release.status(), scan.status()}) {
      if (!s.ok()) return s;
    }
    d->begin_ = *begin;
    d->finish_ = *finish;
    d->release_ = *release;
    d->scan_ = *scan;
    return d;
  }

  mpkbox::Compartment& box() { return *box_; }

  Outcome Decode(const std::string& file) {
    if (file.size() > kMaxFileBytes) {
      return {Verdict::kRejected, absl::StrCat("larger than ", kMaxFileBytes,
                                               " bytes (host limit)")};
    }
    Outcome out = DecodeInside(file);
    if (out.verdict == Verdict::kContained) {
      // The compartment refuses calls until Reset: a fresh heap and stacks,
      // libpng and chunk_parser mapped and constructed again.
      absl::Status reset = box_->Reset();
      absl::StrAppend(
          &out.detail, "\n      compartment reset: ",
          reset.ok() ? "libpng and chunk_parser reloaded" : reset.ToString());
    }
    return out;
  }

 private:
  explicit PngDecoder(std::unique_ptr<mpkbox::Compartment> box)
      : box_(std::move(box)) {}

  // A failed call: the status, then the fault report (kind, address, key,
  // backtrace). Read before Reset, which clears it.
  Outcome Contained(const absl::Status& s) {
    std::string detail = absl::StatusCodeToString(s.code());
    const mpkbox::FaultReport* f = box_->last_fault();
    if (f == nullptr) {
      absl::StrAppend(&detail, ": ", s.message());
      return {Verdict::kContained, std::move(detail)};
    }
    const char* sig = f->signal != 0 ? sigabbrev_np(f->signal) : nullptr;
    absl::StrAppend(&detail, ", ", sig != nullptr ? "SIG" : "",
                    sig != nullptr ? sig : "fault");
    if (f->code == SI_KERNEL) {
      // A general-protection fault (a non-canonical address) has no data
      // address: where it happened says more.
      absl::StrAppend(&detail, " (general protection) in ",
                      f->backtrace.empty() ? "?" : f->backtrace.front());
    } else if (f->signal == SIGSEGV || f->signal == SIGBUS) {
      absl::StrAppendFormat(
          &detail, " at 0x%x (%s), %s the compartment", f->address,
          f->key_owner,
          box_->Contains(reinterpret_cast<const void*>(f->address), 1)
              ? "inside"
              : "outside");
    }
    absl::StrAppend(&detail, "\n      report: ", f->what);
    if (!f->backtrace.empty()) {
      absl::StrAppend(
          &detail, "\n      backtrace: ", absl::StrJoin(f->backtrace, " <- "));
    }
    return {Verdict::kContained, std::move(detail)};
  }

  Outcome DecodeInside(const std::string& file) {
    Scratch scratch(*box_);
    absl::StatusOr<unsigned char*> data =
        scratch.Get<unsigned char>(std::max<size_t>(file.size(), 1));
    absl::StatusOr<ChunkSummary*> summary = scratch.Get<ChunkSummary>();
    absl::StatusOr<png_image*> image = scratch.Get<png_image>();
    for (const absl::Status& s :
         {data.status(), summary.status(), image.status()}) {
      if (!s.ok()) return {Verdict::kRejected, s.ToString()};
    }
    std::memcpy(*data, file.data(), file.size());

    // 1. chunk_parser lists the chunks (the call an evil file attacks).
    absl::StatusOr<mpkbox::Tainted<int>> chunks = box_->Call(
        scan_, static_cast<const unsigned char*>(*data), file.size(), *summary);
    if (!chunks.ok()) return Contained(chunks.status());
    // At most one chunk per 12 bytes; -1 (no signature) is left to libpng.
    const int chunk_count = chunks->Verify([&](int n) {
      return n >= 0 && static_cast<size_t>(n) <= file.size() / 12 ? n : 0;
    });
    ChunkSummary seen;
    std::memcpy(&seen, *summary, sizeof(seen));  // one copy, then checked
    const std::string keyword =
        seen.text_chunks > 0
            ? BoundedString(seen.first_keyword, sizeof(seen.first_keyword))
            : "";

    // 2. libpng reads the header.
    (*image)->version = PNG_IMAGE_VERSION;
    absl::StatusOr<mpkbox::Tainted<int>> began = box_->Call(
        begin_, *image, static_cast<png_const_voidp>(*data), file.size());
    if (!began.ok()) return Contained(began.status());
    png_image header;
    std::memcpy(&header, *image, sizeof(header));
    if (!began->Verify([](int ok) { return ok == 1; })) {
      return {Verdict::kRejected,
              BoundedString(header.message, sizeof(header.message))};
    }
    const uint32_t width = header.width;
    const uint32_t height = header.height;
    if (width == 0 || height == 0 || width > kMaxSide || height > kMaxSide ||
        uint64_t{width} * height > kMaxPixels) {
      // libpng still holds its state: let it free it.
      if (absl::Status s = box_->Call(release_, *image); !s.ok()) {
        return Contained(s);
      }
      return {Verdict::kRejected,
              absl::StrFormat("%ux%u exceeds the host's limit (%u per side, "
                              "%u pixels)",
                              width, height, kMaxSide, kMaxPixels)};
    }

    // 3. libpng decodes into a buffer of the size the host computed.
    (*image)->format = PNG_FORMAT_RGBA;
    const size_t row_bytes = size_t{width} * 4;
    absl::StatusOr<uint8_t*> pixels = scratch.Get<uint8_t>(row_bytes * height);
    if (!pixels.ok()) {
      if (absl::Status s = box_->Call(release_, *image); !s.ok()) {
        return Contained(s);
      }
      return {Verdict::kRejected, pixels.status().ToString()};
    }
    absl::StatusOr<mpkbox::Tainted<int>> finished = box_->Call(
        finish_, *image, png_const_colorp{nullptr}, static_cast<void*>(*pixels),
        static_cast<png_int_32>(row_bytes), static_cast<void*>(nullptr));
    if (!finished.ok()) return Contained(finished.status());
    if (!finished->Verify([](int ok) { return ok == 1; })) {
      std::memcpy(&header, *image, sizeof(header));
      return {Verdict::kRejected,
              BoundedString(header.message, sizeof(header.message))};
    }

    // The pixels are plain bytes: any value is valid. The mean shows they
    // were read.
    uint64_t sum[3] = {0, 0, 0};
    for (size_t i = 0; i < row_bytes * height; i += 4) {
      for (int c = 0; c < 3; ++c) sum[c] += (*pixels)[i + c];
    }
    const uint64_t n = uint64_t{width} * height;
    std::string detail = absl::StrFormat(
        "%ux%u, mean colour #%02x%02x%02x, %d chunks", width, height,
        sum[0] / n, sum[1] / n, sum[2] / n, chunk_count);
    if (!keyword.empty()) absl::StrAppend(&detail, ", tEXt '", keyword, "'");
    return {Verdict::kDecoded, std::move(detail)};
  }

  std::unique_ptr<mpkbox::Compartment> box_;
  decltype(&png_image_begin_read_from_memory) begin_ = nullptr;
  decltype(&png_image_finish_read) finish_ = nullptr;
  decltype(&png_image_free) release_ = nullptr;
  ChunkScanFn* scan_ = nullptr;
};

// What the file name promises (ok_*, bad_*, evil_*); other names promise
// nothing.
bool Expected(const std::string& name, Verdict v) {
  if (absl::StartsWith(name, "ok_")) return v == Verdict::kDecoded;
  if (absl::StartsWith(name, "bad_")) return v == Verdict::kRejected;
  if (absl::StartsWith(name, "evil_")) return v == Verdict::kContained;
  return true;  // no promise made
}

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  }
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 2) {
    std::fprintf(stderr, "usage: %s [INPUT_DIR]\n", argv[0]);
    return 1;
  }
  const std::filesystem::path dir = argc == 2 ? argv[1] : DEFAULT_INPUT_DIR;
  if (!mpkbox::Runtime::IsSupported()) {
    std::printf("hardened_parser: no PKU on this machine: skipped\n");
    return 2;
  }
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    // Dot files (the build's stamp) are not inputs.
    if (entry.is_regular_file() &&
        !absl::StartsWith(entry.path().filename().string(), ".")) {
      files.push_back(entry.path());
    }
  }
  if (ec || files.empty()) {
    std::printf("hardened_parser: no input files in %s%s%s\n",
                dir.string().c_str(), ec ? ": " : "",
                ec ? ec.message().c_str() : "");
    return 1;
  }
  std::sort(files.begin(), files.end());

  absl::StatusOr<std::unique_ptr<PngDecoder>> decoder = PngDecoder::Create();
  if (!decoder.ok()) {
    std::printf("hardened_parser: %s\n", decoder.status().ToString().c_str());
    return 1;
  }
  mpkbox::Compartment& box = (*decoder)->box();
  std::printf("hardened_parser: %zu untrusted files from %s\n", files.size(),
              dir.string().c_str());
  std::printf(
      "  compartment '%s' (key %d): libpng16.so.16 with its libz, "
      "and chunk_parser.so, loaded\n",
      box.name().c_str(), box.pkey());

  int counts[3] = {0, 0, 0};
  int unexpected = 0;
  for (const std::filesystem::path& path : files) {
    const std::string name = path.filename().string();
    absl::StatusOr<std::string> bytes = ReadFile(path);
    Outcome out = bytes.ok()
                      ? (*decoder)->Decode(*bytes)
                      : Outcome{Verdict::kRejected, bytes.status().ToString()};
    ++counts[static_cast<int>(out.verdict)];
    const char* label = out.verdict == Verdict::kDecoded    ? "OK"
                        : out.verdict == Verdict::kRejected ? "rejected:"
                                                            : "CONTAINED:";
    const bool expected = Expected(name, out.verdict);
    if (!expected) ++unexpected;
    std::printf("  %-26s %s %s%s\n", name.c_str(), label, out.detail.c_str(),
                expected ? "" : "\n      UNEXPECTED for this file name");
  }
  std::printf(
      "hardened_parser: %zu files: %d OK, %d rejected, %d contained; "
      "%s\n",
      files.size(), counts[0], counts[1], counts[2],
      unexpected == 0 ? "every outcome as expected"
                      : absl::StrCat(unexpected, " UNEXPECTED").c_str());
  return unexpected == 0 ? 0 : 1;
}
