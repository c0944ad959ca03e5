// Real libraries inside a compartment against the same libraries called
// natively, and against a process sandbox, measured in the same run
// (docs/DESIGN.md 7). bench/run.sh runs this binary; bench/verdicts.py turns
// its JSON into the "Libraries" section of bench/RESULTS.md.
//
// Inside means Debian's shared object (libz.so.1, libpng16.so.16 with its
// own libz) loaded into a compartment with Compartment::Load, looked up with
// Lookup and called through Call on buffers from Compartment::Allocate.
// Native means the host's copy of the same library (this program links
// ZLIB::ZLIB and PNG::PNG: the same files) called directly on buffers from
// the host heap. Both see the same bytes. N is the input size in bytes
// (1 KiB: per-call costs dominate; 256 KiB: the library's own work does).
//
//   BM_ZlibCompressNative/N    compress2(level 6) of N bytes of text-like
//                              data (words, punctuation, lines), host's libz.
//   BM_ZlibCompressInside/N    the same, one box->Call of the compartment's
//                              compress2.
//   BM_ZlibCompressProcess/N   the same compress2 in a worker process forked
//                              once before timing (the host's libz there):
//                              the input already lies in memory shared with
//                              the worker (as the inside input lies in the
//                              compartment's heap); each call is a request on
//                              a pipe, compress2 in the worker into the
//                              shared memory, a reply on a second pipe. The
//                              least a process sandbox pays per call.
//   BM_ZlibCompressProcessPipe/N
//                              the same worker with the data on the pipes:
//                              the input is written to the request pipe, the
//                              output read back from the reply pipe (64 KiB
//                              pipe buffers, the default).
//   BM_ZlibUncompressNative/N  uncompress of that data compressed, back into
//                              N bytes, host's libz.
//   BM_ZlibUncompressInside/N  the same, one box->Call of the compartment's
//                              uncompress.
//   BM_PngDecodeNative/W       decode of a W x W RGBA PNG (made at start-up
//                              by the host's libpng from a synthetic image:
//                              gradients, shapes, a little noise) with the
//                              simplified API, per iteration:
//                              png_image_begin_read_from_memory,
//                              png_image_finish_read into RGBA,
//                              png_image_free.
//   BM_PngDecodeInside/W       the same three calls, each a box->Call of the
//                              compartment's libpng (the png_image, the PNG
//                              and the pixel buffer in the compartment).
//   BM_ZlibCompressPaired/N, BM_ZlibUncompressPaired/N, BM_PngDecodePaired/W
//                              one native and one inside call per iteration,
//                              each timed alone, alternating which goes
//                              first (RunPaired below): the ratio of the two
//                              comes from calls milliseconds apart, so drift
//                              of this shared machine cancels out. These are
//                              what the 0.98 target is judged on.
//   BM_ZlibCompressCalibration/N, BM_ZlibUncompressCalibration/N,
//   BM_PngDecodeCalibration/W  the paired loop with a second native call (on
//                              buffers of its own) in the inside call's
//                              place: it should say 1, and how far it is
//                              from 1 is what the method cannot resolve.
//   BM_JpegDecode{Native,Inside,Paired}/N, BM_JpegDecodeCalibration/262144
//                              decode of a JPEG file of about N bytes (1 KiB
//                              to 1 MiB; an RGB picture with texture, quality
//                              85, its side searched for at start-up) into
//                              RGB rows with libjpeg.so.62: jpeg_std_error,
//                              jpeg_create_decompress, jpeg_mem_src,
//                              jpeg_read_header, jpeg_start_decompress,
//                              jpeg_read_scanlines until the last line (it
//                              gives about 2 lines a call), then finish and
//                              destroy; inside, each is a Call (about
//                              7 + side / 2 Calls a decode) on structs, file
//                              and rows in the compartment. `bytes` is the
//                              file's size, `rgb_bytes` the output's.
//   BM_XmlParse{Native,Inside,Paired}/N, BM_XmlParseCalibration/262144
//                              xmlReadMemory of an N-byte document (a catalog
//                              of items: attributes, nested elements, text)
//                              and xmlFreeDoc, libxml2.so.2 (with its ICU);
//                              inside, two Calls. The untimed check counts
//                              the root's child elements on both sides.
//                              Paired ones also report the ratio of the
//                              calling thread's CPU time (paired_cpu_ratio).
//
// Every benchmark sets the counter `bytes`: the uncompressed bytes of one
// call (the input of compress2, the output of uncompress, the decoded pixels
// of the PNG), also given to SetBytesProcessed for throughput. The
// zlib benchmarks also set `packed_bytes` (the compressed size), the PNG
// ones `png_bytes` (the file's size). All use real time (UseRealTime): the
// worker's CPU time is not this process's, and real time is what a caller
// waits for; for the others the two are the same up to noise. The paired
// and calibration benchmarks use manual time: both calls of an iteration,
// without the clock reads around them. The in-process separate benchmarks
// set `faults_per_call`, the calling thread's minor page faults in the
// timed loop per call (0 in steady state, inside and native alike).
// Before and after timing, an untimed call checks the result against the
// native one (compressed bytes are identical: the same libz).
#include <benchmark/benchmark.h>
#include <png.h>
#include <signal.h>
#include <stdio.h>  // jpeglib.h needs FILE and size_t first
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <jpeglib.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "mpkbox/mpkbox.h"

namespace {

constexpr size_t kMaxInput = 256 << 10;  // the largest N
constexpr int kLevel = 6;
constexpr int kPngSide = 512;

// ---------------------------------------------------------------------------
// Test data.

// Deterministic text: words drawn with a skewed distribution (frequent
// words often, rare ones seldom), capitalised sentences, commas, lines of
// about 72 columns, paragraphs. zlib compresses it about as it does prose.
std::vector<uint8_t> MakeText(size_t n) {
  static const char* const kWords[] = {
      "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as",
      "with", "was", "on", "be", "by", "this", "are", "from", "or", "at",
      "which", "an", "not", "but", "have", "has", "its", "were", "can",
      "memory", "process", "compartment", "library", "call", "key", "page",
      "thread", "signal", "stack", "heap", "buffer", "function", "result",
      "kernel", "protection", "domain", "gate", "sandbox", "isolation",
      "untrusted", "native", "code", "data", "input", "output", "value",
      "error", "return", "pointer", "allocation", "region", "address",
      "table", "entry", "state", "register", "instruction", "benchmark",
      "measured", "compressed", "decoded", "image", "pixel", "row", "column",
      "header", "chunk", "stream", "window", "level", "block", "symbol",
      "length", "distance", "literal", "match", "hash", "chain", "tree",
      "frequency", "checksum", "adler", "deflate", "inflate", "fault",
      "reset", "policy", "system", "every", "between", "before", "after",
      "without", "through", "against", "because", "while", "when", "where",
      "only", "also", "each", "other", "same", "first", "last", "small",
      "large", "fast", "slow", "safe", "trusted", "shared", "private"};
  constexpr size_t kCount = sizeof(kWords) / sizeof(kWords[0]);
  uint64_t s = 0x9e3779b97f4a7c15ull;
  auto next = [&s] {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  };
  std::string out;
  out.reserve(n + 64);
  size_t column = 0;
  bool sentence_start = true;
  while (out.size() < n) {
    // The product of two uniform draws: small indices far more often.
    const uint64_t r = next();
    const size_t i = ((r & 0xffff) % kCount) * ((r >> 16 & 0xffff) % kCount) /
                     kCount;
    std::string w = kWords[i];
    if (sentence_start) w[0] = static_cast<char>(w[0] - 'a' + 'A');
    sentence_start = false;
    if (column + w.size() + 1 > 72) {
      out += '\n';
      column = 0;
      if ((r >> 40) % 8 == 0) out += '\n';  // a paragraph now and then
    } else if (column > 0) {
      out += ' ';
      ++column;
    }
    out += w;
    column += w.size();
    const uint64_t p = (r >> 32) % 16;
    if (p == 0) {
      out += '.';
      ++column;
      sentence_start = true;
    } else if (p == 1) {
      out += ',';
      ++column;
    }
  }
  out.resize(n);
  return std::vector<uint8_t>(out.begin(), out.end());
}

const std::vector<uint8_t>& Text() {
  static const std::vector<uint8_t> text = MakeText(kMaxInput);
  return text;
}

// compress2 of the first n bytes of Text() by the host's libz.
std::vector<uint8_t> NativeCompressed(size_t n) {
  uLongf len = compressBound(n);
  std::vector<uint8_t> out(len);
  if (compress2(out.data(), &len, Text().data(), n, kLevel) != Z_OK) {
    std::fprintf(stderr, "library_bench: compress2 failed\n");
    std::exit(2);
  }
  out.resize(len);
  return out;
}

// A synthetic RGBA picture: a diagonal gradient, filled discs and a band
// with a soft alpha ramp, with +-1 of noise on the colour channels, so that
// PNG's filters and zlib have work to do, as on a photograph with flat parts.
std::vector<uint8_t> MakePixels(int side) {
  std::vector<uint8_t> px(static_cast<size_t>(side) * side * 4);
  uint32_t s = 12345;
  for (int y = 0; y < side; ++y) {
    for (int x = 0; x < side; ++x) {
      uint8_t* p = &px[(static_cast<size_t>(y) * side + x) * 4];
      int r = x * 255 / side, g = y * 255 / side, b = (x + y) * 127 / side;
      for (int d = 0; d < 5; ++d) {
        const int cx = (d * 97 + 60) % side, cy = (d * 173 + 90) % side;
        const int rad = 40 + d * 13;
        if ((x - cx) * (x - cx) + (y - cy) * (y - cy) < rad * rad) {
          r = (d * 53) & 255;
          g = (d * 101 + 40) & 255;
          b = (d * 31 + 200) & 255;
        }
      }
      s = s * 1103515245u + 12345u;
      const int noise = static_cast<int>((s >> 16) % 3) - 1;
      auto clamp = [](int v) { return v < 0 ? 0 : v > 255 ? 255 : v; };
      p[0] = static_cast<uint8_t>(clamp(r + noise));
      p[1] = static_cast<uint8_t>(clamp(g + noise));
      p[2] = static_cast<uint8_t>(clamp(b - noise));
      const int band = y - side * 3 / 4;
      p[3] = static_cast<uint8_t>(band < 0 ? 255 : clamp(255 - band * 4));
    }
  }
  return px;
}

struct Png {
  std::vector<uint8_t> pixels;
  std::vector<uint8_t> file;
};

const Png& TestPng() {
  static const Png png = [] {
    Png p;
    p.pixels = MakePixels(kPngSide);
    png_image image{};
    image.version = PNG_IMAGE_VERSION;
    image.width = kPngSide;
    image.height = kPngSide;
    image.format = PNG_FORMAT_RGBA;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&image, nullptr, &size, 0,
                                   p.pixels.data(), 0, nullptr)) {
      std::fprintf(stderr, "library_bench: png size: %s\n", image.message);
      std::exit(2);
    }
    p.file.resize(size);
    if (!png_image_write_to_memory(&image, p.file.data(), &size, 0,
                                   p.pixels.data(), 0, nullptr)) {
      std::fprintf(stderr, "library_bench: png write: %s\n", image.message);
      std::exit(2);
    }
    p.file.resize(size);
    return p;
  }();
  return png;
}

// Page-aligned host memory, as Allocate(…, 4096) gives the inside side.
uint8_t* HostBuffer(size_t bytes) {
  void* p = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
  if (p == nullptr) {
    std::fprintf(stderr, "library_bench: out of memory\n");
    std::exit(2);
  }
  std::memset(p, 0, bytes);
  return static_cast<uint8_t*>(p);
}

void SetBytes(benchmark::State& state, size_t bytes) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["bytes"] = static_cast<double>(bytes);
}

// The same for zlib, with the compressed size of those bytes.
void SetZlibBytes(benchmark::State& state, size_t bytes, size_t packed) {
  SetBytes(state, bytes);
  state.counters["packed_bytes"] = static_cast<double>(packed);
}

// Minor page faults of the calling thread so far (RUSAGE_THREAD: the
// worker's and other threads' are not counted).
long ThreadMinorFaults() {
  struct rusage ru;
  return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_minflt : 0;
}

// Sets `faults_per_call`: the calling thread's minor page faults since
// `start` (ThreadMinorFaults() before the timed loop) per iteration. A heap
// that hands pages back between calls (purged, unmapped) pays a fault per
// page it touches again on every call; one that keeps them pays none.
void SetFaultsPerCall(benchmark::State& state, long start) {
  if (state.iterations() == 0) return;
  state.counters["faults_per_call"] =
      static_cast<double>(ThreadMinorFaults() - start) /
      static_cast<double>(state.iterations());
}

// ---------------------------------------------------------------------------
// The compartments, created once before timing (process exit returns them).

[[noreturn]] void Die(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "library_bench: %s: %s\n", what, s.ToString().c_str());
  std::exit(2);
}

std::unique_ptr<mpkbox::Compartment> LoadBox(const char* name,
                                             const char* library) {
  auto box = mpkbox::Compartment::Create({.name = name});
  if (!box.ok()) Die("Compartment::Create", box.status());
  if (absl::Status s = (*box)->Load(library); !s.ok()) Die(library, s);
  return *std::move(box);
}

template <typename Fn>
Fn* LookupOrDie(mpkbox::Compartment& box, const char* symbol) {
  auto fn = box.Lookup<Fn>(symbol);
  if (!fn.ok()) Die(symbol, fn.status());
  return *fn;
}

uint8_t* InsideBuffer(mpkbox::Compartment& box, size_t bytes) {
  absl::StatusOr<void*> p = box.Allocate(bytes, 4096);
  if (!p.ok()) Die("Allocate", p.status());
  std::memset(*p, 0, bytes);
  return static_cast<uint8_t*>(*p);
}

struct InsideZlib {
  std::unique_ptr<mpkbox::Compartment> box;
  decltype(::compress2)* compress = nullptr;
  decltype(::uncompress)* uncompress = nullptr;
  uint8_t* src = nullptr;     // Text(), kMaxInput bytes
  uint8_t* packed = nullptr;  // compressBound(kMaxInput)
  uint8_t* back = nullptr;    // kMaxInput
  uLongf* len = nullptr;
};

InsideZlib& Zlib() {
  static InsideZlib zlib = [] {
    InsideZlib z;
    z.box = LoadBox("bench-zlib", "libz.so.1");
    z.compress = LookupOrDie<decltype(::compress2)>(*z.box, "compress2");
    z.uncompress = LookupOrDie<decltype(::uncompress)>(*z.box, "uncompress");
    if (reinterpret_cast<void*>(z.compress) ==
        reinterpret_cast<void*>(&::compress2)) {
      std::fprintf(stderr, "library_bench: compress2 is the host's\n");
      std::exit(2);
    }
    z.src = InsideBuffer(*z.box, kMaxInput);
    std::memcpy(z.src, Text().data(), kMaxInput);
    z.packed = InsideBuffer(*z.box, compressBound(kMaxInput));
    z.back = InsideBuffer(*z.box, kMaxInput);
    z.len = reinterpret_cast<uLongf*>(InsideBuffer(*z.box, sizeof(uLongf)));
    return z;
  }();
  return zlib;
}

struct InsidePng {
  std::unique_ptr<mpkbox::Compartment> box;
  decltype(::png_image_begin_read_from_memory)* begin = nullptr;
  decltype(::png_image_finish_read)* finish = nullptr;
  decltype(::png_image_free)* release = nullptr;
  png_image* image = nullptr;
  uint8_t* file = nullptr;    // TestPng().file
  uint8_t* pixels = nullptr;  // the decoded image
};

InsidePng& Libpng() {
  static InsidePng inside_png = [] {
    InsidePng p;
    p.box = LoadBox("bench-png", "libpng16.so.16");
    p.begin = LookupOrDie<decltype(::png_image_begin_read_from_memory)>(
        *p.box, "png_image_begin_read_from_memory");
    p.finish = LookupOrDie<decltype(::png_image_finish_read)>(
        *p.box, "png_image_finish_read");
    p.release = LookupOrDie<decltype(::png_image_free)>(*p.box,
                                                         "png_image_free");
    p.image = reinterpret_cast<png_image*>(
        InsideBuffer(*p.box, sizeof(png_image)));
    const Png& png = TestPng();
    p.file = InsideBuffer(*p.box, png.file.size());
    std::memcpy(p.file, png.file.data(), png.file.size());
    p.pixels = InsideBuffer(*p.box, png.pixels.size());
    return p;
  }();
  return inside_png;
}

// Fails the benchmark on a bad result (rather than timing an error path).
bool Fail(benchmark::State& state, const char* why) {
  state.SkipWithError(why);
  return false;
}

// ---------------------------------------------------------------------------
// Paired timing: native and inside in one benchmark.
//
// One iteration of a BM_*Paired benchmark is one native call and one inside
// call, each timed on its own with the steady clock, in the order
// native-inside on even iterations and inside-native on odd ones (so each
// side follows itself as often as it follows the other, and neither always
// runs first). The two calls of a pair lie a few milliseconds apart: a slow
// phase of the machine (another tenant, frequency, a noisy neighbour on the
// other vCPU) hits both, which separate benchmarks a second apart cannot
// promise. Counters, per repetition:
//   paired_ratio   the median over the pairs of native time / inside time:
//                  inside's throughput over native's;
//   paired_cpu_ratio
//                  the same of the calling thread's CPU time
//                  (CLOCK_THREAD_CPUTIME_ID, read outside the steady-clock
//                  window): time the vCPU spent on other tenants left out;
//   native_ns, inside_ns, native_cpu_ns, inside_cpu_ns
//                  the mean time per call of each side;
//   pair_count     the pairs behind them.
// The iteration time (manual time) is the pair's: both calls.

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Timed {
  double real = -1.0;  // seconds; negative if the call failed
  double cpu = 0.0;
};

// Runs fn once; its real and thread CPU time.
template <typename Fn>
Timed TimeOne(Fn& fn) {
  const double c0 = ThreadCpuSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  const bool ok = fn();
  const auto t1 = std::chrono::steady_clock::now();
  const double c1 = ThreadCpuSeconds();
  if (!ok) return {};
  return {std::chrono::duration<double>(t1 - t0).count(), c1 - c0};
}

// The median of v (reordered).
double Median(std::vector<double>& v) {
  const auto mid = v.begin() + v.size() / 2;
  std::nth_element(v.begin(), mid, v.end());
  double median = *mid;
  if (v.size() % 2 == 0) median = (median + *std::max_element(v.begin(), mid)) / 2;
  return median;
}

template <typename Native, typename Inside>
void RunPaired(benchmark::State& state, Native native, Inside inside) {
  std::vector<double> ratios, cpu_ratios;
  ratios.reserve(4096);
  cpu_ratios.reserve(4096);
  double native_total = 0, inside_total = 0;
  double native_cpu = 0, inside_cpu = 0;
  bool inside_first = false;
  for (auto _ : state) {
    Timed tn, ti;
    if (inside_first) {
      ti = TimeOne(inside);
      tn = TimeOne(native);
    } else {
      tn = TimeOne(native);
      ti = TimeOne(inside);
    }
    inside_first = !inside_first;
    if (tn.real < 0 || ti.real < 0) {
      Fail(state,
           tn.real < 0 ? "the native call failed" : "the inside call failed");
      return;
    }
    state.SetIterationTime(tn.real + ti.real);
    native_total += tn.real;
    inside_total += ti.real;
    native_cpu += tn.cpu;
    inside_cpu += ti.cpu;
    if (ratios.size() < ratios.capacity()) {
      ratios.push_back(tn.real / ti.real);
      if (ti.cpu > 0) cpu_ratios.push_back(tn.cpu / ti.cpu);
    }
  }
  if (ratios.empty()) return;
  const double n = static_cast<double>(state.iterations());
  state.counters["paired_ratio"] = Median(ratios);
  if (!cpu_ratios.empty()) {
    state.counters["paired_cpu_ratio"] = Median(cpu_ratios);
  }
  state.counters["native_ns"] = native_total / n * 1e9;
  state.counters["inside_ns"] = inside_total / n * 1e9;
  state.counters["native_cpu_ns"] = native_cpu / n * 1e9;
  state.counters["inside_cpu_ns"] = inside_cpu / n * 1e9;
  state.counters["pair_count"] = static_cast<double>(ratios.size());
}

// ---------------------------------------------------------------------------
// zlib, native and inside.

// One compress2 of n bytes of src by the host's libz into out (bound bytes);
// true if it succeeded, with the compressed size in *len.
bool NativeCompress(const uint8_t* src, size_t n, uint8_t* out, uLongf bound,
                    uLongf* len) {
  *len = bound;
  return compress2(out, len, src, n, kLevel) == Z_OK;
}

// One Call of the compartment's compress2 of n bytes of z.src into z.packed.
bool InsideCompress(InsideZlib& z, size_t n) {
  *z.len = compressBound(n);
  auto r = z.box->Call(z.compress, z.packed, z.len,
                       static_cast<const Bytef*>(z.src), uLong{n}, kLevel);
  return r.ok() && r->UnverifiedValue("bench") == Z_OK;
}

// One uncompress by the host's libz of packed_size bytes into n.
bool NativeUncompress(const uint8_t* packed, size_t packed_size, uint8_t* back,
                      size_t n) {
  uLongf len = n;
  return uncompress(back, &len, packed, packed_size) == Z_OK && len == n;
}

// One Call of the compartment's uncompress of z.packed into z.back.
bool InsideUncompress(InsideZlib& z, size_t packed_size, size_t n) {
  *z.len = n;
  auto r = z.box->Call(z.uncompress, z.back, z.len,
                       static_cast<const Bytef*>(z.packed),
                       uLong{packed_size});
  return r.ok() && r->UnverifiedValue("bench") == Z_OK && *z.len == n;
}

// True if the compartment's compress2 of n bytes gives exactly `expected`.
bool InsideCompressMatches(InsideZlib& z, size_t n,
                           const std::vector<uint8_t>& expected) {
  return InsideCompress(z, n) && *z.len == expected.size() &&
         std::memcmp(z.packed, expected.data(), expected.size()) == 0;
}

void BM_ZlibCompressNative(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<uint8_t> expected = NativeCompressed(n);
  const uLongf bound = compressBound(n);
  uint8_t* src = HostBuffer(n);
  uint8_t* out = HostBuffer(bound);
  std::memcpy(src, Text().data(), n);
  const long faults = ThreadMinorFaults();
  for (auto _ : state) {
    uLongf len;
    if (!NativeCompress(src, n, out, bound, &len)) {
      Fail(state, "compress2 failed");
      break;
    }
    benchmark::DoNotOptimize(len);
  }
  SetFaultsPerCall(state, faults);
  SetZlibBytes(state, n, expected.size());
  std::free(src);
  std::free(out);
}
BENCHMARK(BM_ZlibCompressNative)
    ->Arg(1 << 10)
    ->Arg(kMaxInput)
    ->UseRealTime();

void BM_ZlibCompressInside(benchmark::State& state) {
  InsideZlib& z = Zlib();
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<uint8_t> expected = NativeCompressed(n);
  if (!InsideCompressMatches(z, n, expected)) {
    Fail(state, "compress2 in the compartment gave a different result");
    return;
  }
  const long faults = ThreadMinorFaults();
  for (auto _ : state) {
    if (!InsideCompress(z, n)) {
      Fail(state, "compress2 in the compartment failed");
      break;
    }
  }
  SetFaultsPerCall(state, faults);
  SetZlibBytes(state, n, expected.size());
  if (!InsideCompressMatches(z, n, expected)) {
    Fail(state, "compress2 in the compartment gave a different result");
  }
}
BENCHMARK(BM_ZlibCompressInside)
    ->Arg(1 << 10)
    ->Arg(kMaxInput)
    ->UseRealTime();

void BM_ZlibCompressPaired(benchmark::State& state) {
  InsideZlib& z = Zlib();
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<uint8_t> expected = NativeCompressed(n);
  const uLongf bound = compressBound(n);
  uint8_t* src = HostBuffer(n);
  uint8_t* out = HostBuffer(bound);
  std::memcpy(src, Text().data(), n);
  if (!InsideCompressMatches(z, n, expected)) {
    Fail(state, "compress2 in the compartment gave a different result");
  } else {
    RunPaired(
        state,
        [&] {
          uLongf len;
          const bool ok = NativeCompress(src, n, out, bound, &len);
          benchmark::DoNotOptimize(len);
          return ok;
        },
        [&] { return InsideCompress(z, n); });
    SetZlibBytes(state, n, expected.size());
    if (!InsideCompressMatches(z, n, expected) ||
        std::memcmp(out, expected.data(), expected.size()) != 0) {
      Fail(state, "compress2 gave a different result");
    }
  }
  std::free(src);
  std::free(out);
}
BENCHMARK(BM_ZlibCompressPaired)
    ->Arg(1 << 10)
    ->Arg(kMaxInput)
    ->UseManualTime();

// The paired loop with native on both sides (each with its own buffers):
// what the method shows when there is no difference to find.
void BM_ZlibCompressCalibration(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const uLongf bound = compressBound(n);
  uint8_t* src[2] = {HostBuffer(n), HostBuffer(n)};
  uint8_t* out[2] = {HostBuffer(bound), HostBuffer(bound)};
  for (uint8_t* p : src) std::memcpy(p, Text().data(), n);
  auto side = [&](int i) {
    return [&, i] {
      uLongf len;
      const bool ok = NativeCompress(src[i], n, out[i], bound, &len);
      benchmark::DoNotOptimize(len);
      return ok;
    };
  };
  RunPaired(state, side(0), side(1));
  SetZlibBytes(state, n, NativeCompressed(n).size());
  for (uint8_t* p : src) std::free(p);
  for (uint8_t* p : out) std::free(p);
}
BENCHMARK(BM_ZlibCompressCalibration)->Arg(kMaxInput)->UseManualTime();

void BM_ZlibUncompressNative(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<uint8_t> packed_v = NativeCompressed(n);
  uint8_t* packed = HostBuffer(packed_v.size());
  uint8_t* back = HostBuffer(n);
  std::memcpy(packed, packed_v.data(), packed_v.size());
  const long faults = ThreadMinorFaults();
  for (auto _ : state) {
    if (!NativeUncompress(packed, packed_v.size(), back, n)) {
      Fail(state, "uncompress failed");
      break;
    }
  }
  SetFaultsPerCall(state, faults);
  SetZlibBytes(state, n, packed_v.size());
  if (std::memcmp(back, Text().data(), n) != 0) {
    Fail(state, "uncompress gave different bytes");
  }
  std::free(packed);
  std::free(back);
}
BENCHMARK(BM_ZlibUncompressNative)
    ->Arg(1 << 10)
    ->Arg(kMaxInput)
    ->UseRealTime();

void BM_ZlibUncompressInside(benchmark::State& state) {
  InsideZlib& z = Zlib();
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<uint8_t> packed = NativeCompressed(n);
  std::memcpy(z.packed, packed.data(), packed.size());
  std::memset(z.back, 0, n);
  const long faults = ThreadMinorFaults();
  for (auto _ : state) {
    if (!InsideUncompress(z, packed.size(), n)) {
      Fail(state, "uncompress in the compartment failed");
      break;
    }
  }
  SetFaultsPerCall(state, faults);
  SetZlibBytes(state, n, packed.size());
  if (std::memcmp(z.back, Text().data(), n) != 0) {
    Fail(state, "uncompress in the compartment gave different bytes");
  }
}
BENCHMARK(BM_ZlibUncompressInside)
    ->Arg(1 << 10)
    ->Arg(kMaxInput)
    ->UseRealTime();

void BM_ZlibUncompressPaired(benchmark::State& state) {
  InsideZlib& z = Zlib();
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<uint8_t> packed_v = NativeCompressed(n);
  uint8_t* packed = HostBuffer(packed_v.size());
  uint8_t* back = HostBuffer(n);
  std::memcpy(packed, packed_v.data(), packed_v.size());
  std::memcpy(z.packed, packed_v.data(), packed_v.size());
  std::memset(z.back, 0, n);
  RunPaired(
      state,
      [&] { return NativeUncompress(packed, packed_v.size(), back, n); },
      [&] { return InsideUncompress(z, packed_v.size(), n); });
  SetZlibBytes(state, n, packed_v.size());
  if (std::memcmp(back, Text().data(), n) != 0 ||
      std::memcmp(z.back, Text().data(), n) != 0) {
    Fail(state, "uncompress gave different bytes");
  }
  std::free(packed);
  std::free(back);
}
BENCHMARK(BM_ZlibUncompressPaired)
    ->Arg(1 << 10)
    ->Arg(kMaxInput)
    ->UseManualTime();

void BM_ZlibUncompressCalibration(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<uint8_t> packed_v = NativeCompressed(n);
  uint8_t* packed[2] = {HostBuffer(packed_v.size()),
                        HostBuffer(packed_v.size())};
  uint8_t* back[2] = {HostBuffer(n), HostBuffer(n)};
  for (uint8_t* p : packed) std::memcpy(p, packed_v.data(), packed_v.size());
  auto side = [&](int i) {
    return [&, i] {
      return NativeUncompress(packed[i], packed_v.size(), back[i], n);
    };
  };
  RunPaired(state, side(0), side(1));
  SetZlibBytes(state, n, packed_v.size());
  for (uint8_t* p : packed) std::free(p);
  for (uint8_t* p : back) std::free(p);
}
BENCHMARK(BM_ZlibUncompressCalibration)->Arg(kMaxInput)->UseManualTime();

// ---------------------------------------------------------------------------
// The process sandbox: one worker process, forked before anything else.

enum class Op : uint32_t { kCompressShared = 1, kCompressPiped = 2 };

struct Request {
  Op op;
  uint32_t size;  // input bytes
};

struct Reply {
  int32_t rc;
  uint32_t size;  // output bytes
};

// Shared memory: input at 0, output at kSharedOut.
constexpr size_t kSharedOut = kMaxInput;
constexpr size_t kSharedBytes = 2 * kMaxInput + 4096;  // > compressBound

struct Worker {
  pid_t pid = -1;
  int request_fd = -1;  // parent writes
  int reply_fd = -1;    // parent reads
  uint8_t* shared = nullptr;
};

Worker worker;

bool ReadFull(int fd, void* buf, size_t n) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    const ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool WriteFull(int fd, const void* buf, size_t n) {
  auto* p = static_cast<const uint8_t*>(buf);
  while (n > 0) {
    const ssize_t r = write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// The worker's loop: until the request pipe closes.
[[noreturn]] void WorkerMain(int request_fd, int reply_fd, uint8_t* shared) {
  std::vector<uint8_t> in(kMaxInput);
  std::vector<uint8_t> out(compressBound(kMaxInput));
  Request req;
  while (ReadFull(request_fd, &req, sizeof(req))) {
    if (req.size > kMaxInput) _exit(3);
    Reply reply{};
    if (req.op == Op::kCompressShared) {
      uLongf len = kSharedBytes - kSharedOut;
      reply.rc = compress2(shared + kSharedOut, &len, shared, req.size,
                           kLevel);
      reply.size = static_cast<uint32_t>(len);
      if (!WriteFull(reply_fd, &reply, sizeof(reply))) _exit(4);
    } else if (req.op == Op::kCompressPiped) {
      if (!ReadFull(request_fd, in.data(), req.size)) _exit(5);
      uLongf len = out.size();
      reply.rc = compress2(out.data(), &len, in.data(), req.size, kLevel);
      reply.size = static_cast<uint32_t>(len);
      if (!WriteFull(reply_fd, &reply, sizeof(reply)) ||
          !WriteFull(reply_fd, out.data(), reply.size)) {
        _exit(6);
      }
    } else {
      _exit(7);
    }
  }
  _exit(0);
}

// Forks the worker. Called first thing in main: before the runtime is set
// up and before any compartment exists, so the worker is a plain process
// with the host's libz (it inherits the CPU affinity run.sh sets).
void StartWorker() {
  void* shared = mmap(nullptr, kSharedBytes, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  int request[2], reply[2];
  if (shared == MAP_FAILED || pipe(request) != 0 || pipe(reply) != 0) {
    std::perror("library_bench: worker set-up");
    std::exit(2);
  }
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("library_bench: fork");
    std::exit(2);
  }
  if (pid == 0) {
    close(request[1]);
    close(reply[0]);
    WorkerMain(request[0], reply[1], static_cast<uint8_t*>(shared));
  }
  close(request[0]);
  close(reply[1]);
  worker = {pid, request[1], reply[0], static_cast<uint8_t*>(shared)};
  std::memcpy(worker.shared, Text().data(), kMaxInput);
}

void StopWorker() {
  if (worker.pid <= 0) return;
  close(worker.request_fd);
  close(worker.reply_fd);
  int status = 0;
  waitpid(worker.pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "library_bench: the worker ended badly (%d)\n",
                 status);
  }
}

// One call through shared memory: the output stays in worker.shared.
bool SharedCompress(size_t n, Reply* reply) {
  const Request req{Op::kCompressShared, static_cast<uint32_t>(n)};
  return WriteFull(worker.request_fd, &req, sizeof(req)) &&
         ReadFull(worker.reply_fd, reply, sizeof(*reply)) && reply->rc == Z_OK;
}

// One call with the data on the pipes: the output lands in `out`.
bool PipedCompress(const uint8_t* src, size_t n, uint8_t* out, size_t cap,
                   Reply* reply) {
  const Request req{Op::kCompressPiped, static_cast<uint32_t>(n)};
  return WriteFull(worker.request_fd, &req, sizeof(req)) &&
         WriteFull(worker.request_fd, src, n) &&
         ReadFull(worker.reply_fd, reply, sizeof(*reply)) &&
         reply->size <= cap && ReadFull(worker.reply_fd, out, reply->size) &&
         reply->rc == Z_OK;
}

void BM_ZlibCompressProcess(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<uint8_t> expected = NativeCompressed(n);
  auto matches = [&] {
    Reply reply{};
    return SharedCompress(n, &reply) && reply.size == expected.size() &&
           std::memcmp(worker.shared + kSharedOut, expected.data(),
                       expected.size()) == 0;
  };
  if (!matches()) {
    Fail(state, "the worker's compress2 failed or differs");
    return;
  }
  for (auto _ : state) {
    Reply reply;
    if (!SharedCompress(n, &reply)) {
      Fail(state, "the worker's compress2 failed");
      break;
    }
  }
  SetZlibBytes(state, n, expected.size());
  if (!matches()) Fail(state, "the worker's compress2 failed or differs");
}
BENCHMARK(BM_ZlibCompressProcess)
    ->Arg(1 << 10)
    ->Arg(kMaxInput)
    ->UseRealTime();

void BM_ZlibCompressProcessPipe(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<uint8_t> expected = NativeCompressed(n);
  const size_t cap = compressBound(n);
  uint8_t* src = HostBuffer(n);
  uint8_t* out = HostBuffer(cap);
  std::memcpy(src, Text().data(), n);
  auto matches = [&] {
    Reply reply{};
    return PipedCompress(src, n, out, cap, &reply) &&
           reply.size == expected.size() &&
           std::memcmp(out, expected.data(), expected.size()) == 0;
  };
  if (!matches()) {
    Fail(state, "the worker's compress2 failed or differs");
  } else {
    for (auto _ : state) {
      Reply reply;
      if (!PipedCompress(src, n, out, cap, &reply)) {
        Fail(state, "the worker's compress2 failed");
        break;
      }
    }
    SetZlibBytes(state, n, expected.size());
    if (!matches()) Fail(state, "the worker's compress2 failed or differs");
  }
  std::free(src);
  std::free(out);
}
BENCHMARK(BM_ZlibCompressProcessPipe)
    ->Arg(1 << 10)
    ->Arg(kMaxInput)
    ->UseRealTime();

// ---------------------------------------------------------------------------
// libpng, native and inside.

// One decode by the host's libpng of the file into out; false on failure.
bool NativeDecode(const uint8_t* file, size_t file_size, uint8_t* out) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, file, file_size)) return false;
  image.format = PNG_FORMAT_RGBA;
  const int ok = png_image_finish_read(&image, nullptr, out, 0, nullptr);
  png_image_free(&image);
  return ok != 0;
}

// One decode in the compartment; false on any failure.
bool InsideDecode(InsidePng& p, size_t file_size) {
  std::memset(p.image, 0, sizeof(*p.image));
  p.image->version = PNG_IMAGE_VERSION;
  auto begun = p.box->Call(p.begin, p.image,
                           static_cast<png_const_voidp>(p.file), file_size);
  if (!begun.ok() || begun->UnverifiedValue("bench") != 1) return false;
  p.image->format = PNG_FORMAT_RGBA;
  auto done = p.box->Call(p.finish, p.image, png_const_colorp{nullptr},
                          static_cast<void*>(p.pixels), png_int_32{0},
                          static_cast<void*>(nullptr));
  const bool freed = p.box->Call(p.release, p.image).ok();
  return done.ok() && done->UnverifiedValue("bench") == 1 && freed;
}

void SetPngBytes(benchmark::State& state, const Png& png) {
  SetBytes(state, png.pixels.size());
  state.counters["png_bytes"] = static_cast<double>(png.file.size());
}

void BM_PngDecodeNative(benchmark::State& state) {
  const Png& png = TestPng();
  if (state.range(0) != kPngSide) {
    Fail(state, "only the start-up image's size is made");
    return;
  }
  uint8_t* file = HostBuffer(png.file.size());
  uint8_t* out = HostBuffer(png.pixels.size());
  std::memcpy(file, png.file.data(), png.file.size());
  const long faults = ThreadMinorFaults();
  for (auto _ : state) {
    if (!NativeDecode(file, png.file.size(), out)) {
      Fail(state, "the decode failed");
      break;
    }
  }
  SetFaultsPerCall(state, faults);
  SetPngBytes(state, png);
  if (std::memcmp(out, png.pixels.data(), png.pixels.size()) != 0) {
    Fail(state, "the decoded pixels differ");
  }
  std::free(file);
  std::free(out);
}
BENCHMARK(BM_PngDecodeNative)->Arg(kPngSide)->UseRealTime();

void BM_PngDecodeInside(benchmark::State& state) {
  InsidePng& p = Libpng();
  const Png& png = TestPng();
  if (state.range(0) != kPngSide) {
    Fail(state, "only the start-up image's size is made");
    return;
  }
  std::memset(p.pixels, 0, png.pixels.size());
  if (!InsideDecode(p, png.file.size()) ||
      std::memcmp(p.pixels, png.pixels.data(), png.pixels.size()) != 0) {
    Fail(state, "the decode in the compartment failed or differs");
    return;
  }
  std::memset(p.pixels, 0, png.pixels.size());
  const long faults = ThreadMinorFaults();
  for (auto _ : state) {
    if (!InsideDecode(p, png.file.size())) {
      Fail(state, "the decode in the compartment failed");
      break;
    }
  }
  SetFaultsPerCall(state, faults);
  SetPngBytes(state, png);
  if (std::memcmp(p.pixels, png.pixels.data(), png.pixels.size()) != 0) {
    Fail(state, "the decoded pixels differ");
  }
}
BENCHMARK(BM_PngDecodeInside)->Arg(kPngSide)->UseRealTime();

void BM_PngDecodePaired(benchmark::State& state) {
  InsidePng& p = Libpng();
  const Png& png = TestPng();
  if (state.range(0) != kPngSide) {
    Fail(state, "only the start-up image's size is made");
    return;
  }
  uint8_t* file = HostBuffer(png.file.size());
  uint8_t* out = HostBuffer(png.pixels.size());
  std::memcpy(file, png.file.data(), png.file.size());
  std::memset(p.pixels, 0, png.pixels.size());
  RunPaired(
      state, [&] { return NativeDecode(file, png.file.size(), out); },
      [&] { return InsideDecode(p, png.file.size()); });
  SetPngBytes(state, png);
  if (std::memcmp(out, png.pixels.data(), png.pixels.size()) != 0 ||
      std::memcmp(p.pixels, png.pixels.data(), png.pixels.size()) != 0) {
    Fail(state, "the decoded pixels differ");
  }
  std::free(file);
  std::free(out);
}
BENCHMARK(BM_PngDecodePaired)->Arg(kPngSide)->UseManualTime();

void BM_PngDecodeCalibration(benchmark::State& state) {
  const Png& png = TestPng();
  if (state.range(0) != kPngSide) {
    Fail(state, "only the start-up image's size is made");
    return;
  }
  uint8_t* file[2] = {HostBuffer(png.file.size()),
                      HostBuffer(png.file.size())};
  uint8_t* out[2] = {HostBuffer(png.pixels.size()),
                     HostBuffer(png.pixels.size())};
  for (uint8_t* p : file) std::memcpy(p, png.file.data(), png.file.size());
  auto side = [&](int i) {
    return [&, i] { return NativeDecode(file[i], png.file.size(), out[i]); };
  };
  RunPaired(state, side(0), side(1));
  SetPngBytes(state, png);
  for (uint8_t* p : file) std::free(p);
  for (uint8_t* p : out) std::free(p);
}
BENCHMARK(BM_PngDecodeCalibration)->Arg(kPngSide)->UseManualTime();

// ---------------------------------------------------------------------------
// libjpeg-turbo decode and libxml2 parse, inputs of 1 KiB to 1 MiB.

// The separate benchmarks' timed loop: fn() once per iteration; the
// benchmark fails with `what` if it returns false. Sets faults_per_call.
template <typename Fn>
void RunSeparate(benchmark::State& state, Fn fn, const char* what) {
  const long faults = ThreadMinorFaults();
  for (auto _ : state) {
    if (!fn()) {
      Fail(state, what);
      break;
    }
  }
  SetFaultsPerCall(state, faults);
}

constexpr size_t kCodecMax = 1 << 20;  // the largest input

// Inputs of 1, 4, 16, 64, 256 and 1024 KiB.
void CodecSizes(benchmark::internal::Benchmark* b) {
  b->RangeMultiplier(4)->Range(1 << 10, kCodecMax);
}

// An RGB picture for JPEG: gradients, discs and a texture of +-12 on every
// channel (as a photograph's surfaces have), so that the entropy decoder has
// work: about 2.5 bits a pixel at quality 85.
std::vector<uint8_t> MakeRgb(int side) {
  std::vector<uint8_t> px(static_cast<size_t>(side) * side * 3);
  uint32_t s = 777;
  for (int y = 0; y < side; ++y) {
    for (int x = 0; x < side; ++x) {
      int c[3] = {x * 255 / side, y * 255 / side, (x + y) * 127 / side};
      const int cx = side / 3, cy = side / 2, rad = side / 4;
      if ((x - cx) * (x - cx) + (y - cy) * (y - cy) < rad * rad) {
        c[0] = 200;
        c[1] = 60;
      }
      for (int& v : c) {
        s = s * 1103515245u + 12345u;
        v += static_cast<int>((s >> 16) % 25) - 12;
        v = v < 0 ? 0 : v > 255 ? 255 : v;
      }
      uint8_t* p = &px[(static_cast<size_t>(y) * side + x) * 3];
      for (int i = 0; i < 3; ++i) p[i] = static_cast<uint8_t>(c[i]);
    }
  }
  return px;
}

// The host's libjpeg-turbo's encoding of a side x side RGB picture.
std::vector<uint8_t> EncodeJpeg(const std::vector<uint8_t>& rgb, int side) {
  std::vector<JSAMPROW> rows(static_cast<size_t>(side));
  for (int y = 0; y < side; ++y) {
    rows[y] = const_cast<uint8_t*>(&rgb[static_cast<size_t>(y) * side * 3]);
  }
  unsigned char* out = nullptr;
  unsigned long size = 0;
  jpeg_error_mgr err{};
  jpeg_compress_struct c{};
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  c.image_width = c.image_height = static_cast<JDIMENSION>(side);
  c.in_color_space = JCS_RGB;
  c.input_components = 3;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 85, TRUE);
  jpeg_mem_dest(&c, &out, &size);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {  // all the rest each time
    jpeg_write_scanlines(&c, rows.data() + c.next_scanline,
                         c.image_height - c.next_scanline);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::vector<uint8_t> bytes(out, out + size);
  std::free(out);
  return bytes;
}

struct Jpeg {
  int side = 0;
  std::vector<uint8_t> file;
};

// A JPEG file of about n bytes (within a few percent): the side of the
// picture is searched for at start-up.
const Jpeg& TestJpeg(size_t n) {
  static std::map<size_t, Jpeg> made;
  Jpeg& j = made[n];
  if (!j.file.empty()) return j;
  double side = 16;
  for (int step = 0; step < 10; ++step) {
    const int s = std::max(8, static_cast<int>(side + 0.5));
    std::vector<uint8_t> file = EncodeJpeg(MakeRgb(s), s);
    const double got = static_cast<double>(file.size());
    if (j.file.empty() || std::abs(got - static_cast<double>(n)) <
                              std::abs(static_cast<double>(j.file.size()) -
                                       static_cast<double>(n))) {
      j = {s, std::move(file)};
    }
    if (std::abs(got - static_cast<double>(n)) < 0.02 * static_cast<double>(n)) {
      break;
    }
    side = s * std::sqrt(static_cast<double>(n) / got);
  }
  return j;
}

size_t RgbBytes(const Jpeg& j) {
  return static_cast<size_t>(j.side) * j.side * 3;
}

// One decode by the host's libjpeg-turbo into the rows (one per line of the
// picture, pointing into an RGB buffer): the whole libjpeg API sequence,
// error manager to destroy, as an application decoding a file in memory
// runs it.
bool NativeJpegDecode(const uint8_t* file, size_t size, JSAMPROW* rows,
                      int side) {
  jpeg_decompress_struct d;
  jpeg_error_mgr err;
  d.err = jpeg_std_error(&err);
  jpeg_create_decompress(&d);
  jpeg_mem_src(&d, file, size);
  bool ok = jpeg_read_header(&d, TRUE) == JPEG_HEADER_OK &&
            jpeg_start_decompress(&d) &&
            d.output_width == static_cast<JDIMENSION>(side) &&
            d.output_height == static_cast<JDIMENSION>(side) &&
            d.output_components == 3;
  while (ok && d.output_scanline < d.output_height) {
    ok = jpeg_read_scanlines(&d, rows + d.output_scanline,
                             d.output_height - d.output_scanline) > 0;
  }
  ok = ok && jpeg_finish_decompress(&d);
  jpeg_destroy_decompress(&d);
  return ok;
}

struct InsideJpeg {
  std::unique_ptr<mpkbox::Compartment> box;
  decltype(::jpeg_std_error)* std_error = nullptr;
  decltype(::jpeg_CreateDecompress)* create = nullptr;
  decltype(::jpeg_mem_src)* mem_src = nullptr;
  decltype(::jpeg_read_header)* read_header = nullptr;
  decltype(::jpeg_start_decompress)* start = nullptr;
  decltype(::jpeg_read_scanlines)* read_scanlines = nullptr;
  decltype(::jpeg_finish_decompress)* finish = nullptr;
  decltype(::jpeg_destroy_decompress)* destroy = nullptr;
  jpeg_decompress_struct* d = nullptr;
  jpeg_error_mgr* err = nullptr;
  uint8_t* file = nullptr;    // the largest test file's bytes
  uint8_t* pixels = nullptr;  // its decoded RGB
  JSAMPROW* rows = nullptr;   // one per line of its picture
};

InsideJpeg& Libjpeg() {
  static InsideJpeg inside_jpeg = [] {
    InsideJpeg j;
    j.box = LoadBox("bench-jpeg", "libjpeg.so.62");
    mpkbox::Compartment& b = *j.box;
    j.std_error = LookupOrDie<decltype(::jpeg_std_error)>(b, "jpeg_std_error");
    j.create = LookupOrDie<decltype(::jpeg_CreateDecompress)>(
        b, "jpeg_CreateDecompress");
    j.mem_src = LookupOrDie<decltype(::jpeg_mem_src)>(b, "jpeg_mem_src");
    j.read_header =
        LookupOrDie<decltype(::jpeg_read_header)>(b, "jpeg_read_header");
    j.start = LookupOrDie<decltype(::jpeg_start_decompress)>(
        b, "jpeg_start_decompress");
    j.read_scanlines =
        LookupOrDie<decltype(::jpeg_read_scanlines)>(b, "jpeg_read_scanlines");
    j.finish = LookupOrDie<decltype(::jpeg_finish_decompress)>(
        b, "jpeg_finish_decompress");
    j.destroy = LookupOrDie<decltype(::jpeg_destroy_decompress)>(
        b, "jpeg_destroy_decompress");
    j.d = reinterpret_cast<jpeg_decompress_struct*>(
        InsideBuffer(b, sizeof(jpeg_decompress_struct)));
    j.err = reinterpret_cast<jpeg_error_mgr*>(
        InsideBuffer(b, sizeof(jpeg_error_mgr)));
    const Jpeg& largest = TestJpeg(kCodecMax);
    j.file = InsideBuffer(b, largest.file.size() + kCodecMax / 16);
    j.pixels = InsideBuffer(b, RgbBytes(largest));
    j.rows = reinterpret_cast<JSAMPROW*>(
        InsideBuffer(b, sizeof(JSAMPROW) * static_cast<size_t>(largest.side)));
    return j;
  }();
  return inside_jpeg;
}

// The same sequence as NativeJpegDecode, each step a Call of the
// compartment's libjpeg (the structs, the file and the rows in it).
bool InsideJpegDecode(InsideJpeg& j, size_t size, int side) {
  mpkbox::Compartment& b = *j.box;
  auto err = b.Call(j.std_error, j.err);
  if (!err.ok()) return false;
  j.d->err = err->UnverifiedValue("bench: checked by the next calls");
  if (!b.Call(j.create, j.d, int{JPEG_LIB_VERSION},
              sizeof(jpeg_decompress_struct))
           .ok() ||
      !b.Call(j.mem_src, j.d, static_cast<const unsigned char*>(j.file),
              static_cast<unsigned long>(size))
           .ok()) {
    return false;
  }
  auto header = b.Call(j.read_header, j.d, boolean{TRUE});
  auto started = b.Call(j.start, j.d);
  bool ok = header.ok() &&
            header->UnverifiedValue("bench") == JPEG_HEADER_OK &&
            started.ok() && started->UnverifiedValue("bench") &&
            j.d->output_width == static_cast<JDIMENSION>(side) &&
            j.d->output_height == static_cast<JDIMENSION>(side) &&
            j.d->output_components == 3;
  while (ok && j.d->output_scanline < j.d->output_height) {
    const JDIMENSION at = j.d->output_scanline;
    auto got = b.Call(j.read_scanlines, j.d, j.rows + at,
                      static_cast<JDIMENSION>(side) - at);
    ok = got.ok() && got->UnverifiedValue("bench") > 0;
  }
  if (ok) {
    auto finished = b.Call(j.finish, j.d);
    ok = finished.ok() && finished->UnverifiedValue("bench");
  }
  return b.Call(j.destroy, j.d).ok() && ok;
}

// Host buffers for one native decode of j.
struct HostJpeg {
  explicit HostJpeg(const Jpeg& j)
      : file(HostBuffer(j.file.size())),
        pixels(HostBuffer(RgbBytes(j))),
        rows(static_cast<size_t>(j.side)) {
    std::memcpy(file, j.file.data(), j.file.size());
    for (int y = 0; y < j.side; ++y) rows[y] = pixels + y * j.side * 3;
  }
  ~HostJpeg() {
    std::free(file);
    std::free(pixels);
  }
  HostJpeg(const HostJpeg&) = delete;
  HostJpeg& operator=(const HostJpeg&) = delete;
  bool Decode(const Jpeg& j) {
    return NativeJpegDecode(file, j.file.size(), rows.data(), j.side);
  }
  uint8_t* file;
  uint8_t* pixels;
  std::vector<JSAMPROW> rows;
};

// Puts j's file into the compartment and points its rows at its pixels;
// true if a decode there gives the native pixels.
bool PrepareInsideJpeg(InsideJpeg& inside, const Jpeg& j,
                       const uint8_t* native_pixels) {
  std::memcpy(inside.file, j.file.data(), j.file.size());
  for (int y = 0; y < j.side; ++y) {
    inside.rows[y] = inside.pixels + y * j.side * 3;
  }
  std::memset(inside.pixels, 0, RgbBytes(j));
  return InsideJpegDecode(inside, j.file.size(), j.side) &&
         std::memcmp(inside.pixels, native_pixels, RgbBytes(j)) == 0;
}

void SetJpegBytes(benchmark::State& state, const Jpeg& j) {
  SetBytes(state, j.file.size());
  state.counters["rgb_bytes"] = static_cast<double>(RgbBytes(j));
  state.counters["side"] = static_cast<double>(j.side);
}

void BM_JpegDecodeNative(benchmark::State& state) {
  const Jpeg& j = TestJpeg(static_cast<size_t>(state.range(0)));
  HostJpeg host(j);
  RunSeparate(state, [&] { return host.Decode(j); }, "the decode failed");
  SetJpegBytes(state, j);
}
BENCHMARK(BM_JpegDecodeNative)->Apply(CodecSizes)->UseRealTime();

// The inside benchmark alone, or paired with native.
void JpegDecodeInside(benchmark::State& state, bool paired) {
  InsideJpeg& inside = Libjpeg();
  const Jpeg& j = TestJpeg(static_cast<size_t>(state.range(0)));
  HostJpeg host(j);
  if (!host.Decode(j) || !PrepareInsideJpeg(inside, j, host.pixels)) {
    Fail(state, "the decode in the compartment failed or differs");
    return;
  }
  auto decode = [&] {
    return InsideJpegDecode(inside, j.file.size(), j.side);
  };
  if (paired) {
    RunPaired(state, [&] { return host.Decode(j); }, decode);
  } else {
    RunSeparate(state, decode, "the decode in the compartment failed");
  }
  SetJpegBytes(state, j);
  if (std::memcmp(inside.pixels, host.pixels, RgbBytes(j)) != 0) {
    Fail(state, "the decoded pixels differ");
  }
}

void BM_JpegDecodeInside(benchmark::State& state) {
  JpegDecodeInside(state, false);
}
BENCHMARK(BM_JpegDecodeInside)->Apply(CodecSizes)->UseRealTime();

void BM_JpegDecodePaired(benchmark::State& state) {
  JpegDecodeInside(state, true);
}
BENCHMARK(BM_JpegDecodePaired)->Apply(CodecSizes)->UseManualTime();

void BM_JpegDecodeCalibration(benchmark::State& state) {
  const Jpeg& j = TestJpeg(static_cast<size_t>(state.range(0)));
  HostJpeg a(j), b(j);
  RunPaired(
      state, [&] { return a.Decode(j); }, [&] { return b.Decode(j); });
  SetJpegBytes(state, j);
}
BENCHMARK(BM_JpegDecodeCalibration)->Arg(256 << 10)->UseManualTime();

// An XML document of exactly n bytes: a catalog of items with attributes,
// nested elements and text (Text()'s words), as a configuration file or a
// feed has them.
std::string MakeXml(size_t n) {
  static const char kHead[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                              "<catalog>\n";
  static const char kTail[] = "</catalog>\n";
  const std::vector<uint8_t>& text = Text();
  size_t at = 0;
  auto words = [&](size_t len) {
    if (at + len > text.size()) at = 0;
    std::string w(text.begin() + static_cast<ptrdiff_t>(at),
                  text.begin() + static_cast<ptrdiff_t>(at + len));
    at += len;
    return w;
  };
  std::string out = kHead;
  for (int i = 0;; ++i) {
    char item[160];
    std::snprintf(item, sizeof(item),
                  "  <item id=\"%d\" kind=\"k%d\" price=\"%d.%02d\">\n"
                  "    <name>",
                  i, i % 7, i * 37 % 1000, i % 100);
    std::string s = item;
    s += words(12 + i % 20) + "</name>\n    <tags><tag>" + words(6) +
         "</tag><tag>" + words(9) + "</tag></tags>\n    <text>" +
         words(40 + i * 13 % 160) + "</text>\n  </item>\n";
    // The last element fills the document to exactly n bytes.
    if (out.size() + s.size() + sizeof(kTail) + 64 > n) break;
    out += s;
  }
  const size_t tail = sizeof(kTail) - 1;
  const size_t pad = n - out.size() - tail - 10;  // "  <p></p>\n"
  out += "  <p>" + words(pad) + "</p>\n";
  out.resize(n - tail, ' ');  // only grows if words() wrapped short
  out += kTail;
  return out;
}

const std::string& TestXml(size_t n) {
  static std::map<size_t, std::string> made;
  std::string& doc = made[n];
  if (doc.empty()) doc = MakeXml(n);
  return doc;
}

// One parse by the host's libxml2: the root's child elements, or -1.
long NativeXmlParse(const char* text, size_t size) {
  xmlDocPtr doc =
      xmlReadMemory(text, static_cast<int>(size), nullptr, nullptr, 0);
  if (doc == nullptr) return -1;
  const long children =
      static_cast<long>(xmlChildElementCount(xmlDocGetRootElement(doc)));
  xmlFreeDoc(doc);
  return children;
}

struct InsideXml {
  std::unique_ptr<mpkbox::Compartment> box;
  decltype(::xmlReadMemory)* read = nullptr;
  decltype(::xmlFreeDoc)* free_doc = nullptr;
  decltype(::xmlDocGetRootElement)* root = nullptr;
  decltype(::xmlChildElementCount)* count = nullptr;
  char* text = nullptr;  // kCodecMax bytes
};

InsideXml& Libxml2() {
  static InsideXml inside_xml = [] {
    InsideXml x;
    x.box = LoadBox("bench-xml", "libxml2.so.2");  // with ICU, liblzma, libz
    mpkbox::Compartment& b = *x.box;
    x.read = LookupOrDie<decltype(::xmlReadMemory)>(b, "xmlReadMemory");
    x.free_doc = LookupOrDie<decltype(::xmlFreeDoc)>(b, "xmlFreeDoc");
    x.root = LookupOrDie<decltype(::xmlDocGetRootElement)>(
        b, "xmlDocGetRootElement");
    x.count = LookupOrDie<decltype(::xmlChildElementCount)>(
        b, "xmlChildElementCount");
    x.text = reinterpret_cast<char*>(InsideBuffer(b, kCodecMax));
    return x;
  }();
  return inside_xml;
}

// One xmlReadMemory of the compartment's text and xmlFreeDoc of the
// document, or (count) the root's child elements counted before the free.
bool InsideXmlParse(InsideXml& x, size_t size, long* children = nullptr) {
  mpkbox::Compartment& b = *x.box;
  auto doc = b.Call(x.read, static_cast<const char*>(x.text),
                    static_cast<int>(size), static_cast<const char*>(nullptr),
                    static_cast<const char*>(nullptr), 0);
  if (!doc.ok()) return false;
  xmlDocPtr d = doc->UnverifiedValue("bench: freed by the next call");
  if (d == nullptr) return false;
  if (children != nullptr) {
    auto root = b.Call(x.root, d);
    auto n = root.ok() ? b.Call(x.count, root->UnverifiedValue("bench"))
                       : absl::StatusOr<mpkbox::Tainted<unsigned long>>(
                             root.status());
    *children = n.ok() ? static_cast<long>(n->UnverifiedValue("bench")) : -1;
  }
  return b.Call(x.free_doc, d).ok();
}

// Puts doc into the compartment; true if a parse there counts as many
// child elements of the root as the native one, and at least one.
bool PrepareInsideXml(InsideXml& x, const std::string& doc) {
  std::memcpy(x.text, doc.data(), doc.size());
  long inside = -1;
  const long native = NativeXmlParse(doc.data(), doc.size());
  return native > 0 && InsideXmlParse(x, doc.size(), &inside) &&
         inside == native;
}

void SetXmlBytes(benchmark::State& state, const std::string& doc) {
  SetBytes(state, doc.size());
}

void BM_XmlParseNative(benchmark::State& state) {
  const std::string& doc = TestXml(static_cast<size_t>(state.range(0)));
  char* text = reinterpret_cast<char*>(HostBuffer(doc.size()));
  std::memcpy(text, doc.data(), doc.size());
  RunSeparate(
      state, [&] { return NativeXmlParse(text, doc.size()) >= 0; },
      "the parse failed");
  SetXmlBytes(state, doc);
  std::free(text);
}
BENCHMARK(BM_XmlParseNative)->Apply(CodecSizes)->UseRealTime();

void BM_XmlParseInside(benchmark::State& state) {
  InsideXml& x = Libxml2();
  const std::string& doc = TestXml(static_cast<size_t>(state.range(0)));
  if (!PrepareInsideXml(x, doc)) {
    Fail(state, "the parse in the compartment failed or differs");
    return;
  }
  RunSeparate(
      state, [&] { return InsideXmlParse(x, doc.size()); },
      "the parse in the compartment failed");
  SetXmlBytes(state, doc);
}
BENCHMARK(BM_XmlParseInside)->Apply(CodecSizes)->UseRealTime();

void BM_XmlParsePaired(benchmark::State& state) {
  InsideXml& x = Libxml2();
  const std::string& doc = TestXml(static_cast<size_t>(state.range(0)));
  char* text = reinterpret_cast<char*>(HostBuffer(doc.size()));
  std::memcpy(text, doc.data(), doc.size());
  if (!PrepareInsideXml(x, doc)) {
    Fail(state, "the parse in the compartment failed or differs");
  } else {
    RunPaired(
        state, [&] { return NativeXmlParse(text, doc.size()) >= 0; },
        [&] { return InsideXmlParse(x, doc.size()); });
    SetXmlBytes(state, doc);
  }
  std::free(text);
}
BENCHMARK(BM_XmlParsePaired)->Apply(CodecSizes)->UseManualTime();

void BM_XmlParseCalibration(benchmark::State& state) {
  const std::string& doc = TestXml(static_cast<size_t>(state.range(0)));
  char* text[2];
  for (char*& t : text) {
    t = reinterpret_cast<char*>(HostBuffer(doc.size()));
    std::memcpy(t, doc.data(), doc.size());
  }
  auto side = [&](int i) {
    return [&, i] { return NativeXmlParse(text[i], doc.size()) >= 0; };
  };
  RunPaired(state, side(0), side(1));
  SetXmlBytes(state, doc);
  for (char* t : text) std::free(t);
}
BENCHMARK(BM_XmlParseCalibration)->Arg(256 << 10)->UseManualTime();

}  // namespace

int main(int argc, char** argv) {
  // A broken worker must fail its benchmark, not kill this process.
  signal(SIGPIPE, SIG_IGN);
  StartWorker();
  if (!mpkbox::Runtime::IsSupported()) {
    std::fprintf(stderr, "library_bench: no PKU on this machine\n");
    StopWorker();
    return 2;
  }
  if (absl::Status s = mpkbox::Runtime::Init(); !s.ok()) {
    std::fprintf(stderr, "library_bench: Runtime::Init: %s\n",
                 std::string(s.message()).c_str());
    StopWorker();
    return 2;
  }
  TestPng();  // data, compartments and loaded libraries before any timing
  Zlib();
  Libpng();
  Libjpeg();  // makes the largest JPEG too
  Libxml2();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    StopWorker();
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  StopWorker();
  return 0;
}
