#include "sandboxed_zlib.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace {

// Compartment memory for one call, freed when the call is over (and before
// any Reset, which would let the addresses be reused).
class Scratch {
 public:
  explicit Scratch(mpkbox::Compartment& box) : box_(box) {}
  ~Scratch() {
    for (void* p : owned_) box_.Free(p);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  // `bytes` copied in, or zeroed memory when `bytes` is empty.
  template <typename T>
  absl::StatusOr<T*> Get(size_t count, absl::string_view bytes = {}) {
    const size_t size = std::max<size_t>(sizeof(T) * count, 1);
    absl::StatusOr<void*> p = box_.Allocate(size, alignof(T));
    if (!p.ok()) return p.status();
    owned_.push_back(*p);
    std::memset(*p, 0, size);
    if (!bytes.empty()) {
      std::memcpy(*p, bytes.data(), std::min(bytes.size(), size));
    }
    return static_cast<T*>(*p);
  }

 private:
  mpkbox::Compartment& box_;
  std::vector<void*> owned_;
};

// What zlib's one-shot functions may return; anything else is a lie.
absl::Status ZlibError(int code, absl::string_view op) {
  switch (code) {
    case Z_MEM_ERROR:
      return absl::ResourceExhaustedError(
          absl::StrCat(op, ": out of memory in the compartment"));
    case Z_BUF_ERROR:
      return absl::OutOfRangeError(
          absl::StrCat(op, ": the output does not fit"));
    case Z_DATA_ERROR:
      return absl::DataLossError(
          absl::StrCat(op, ": corrupt or truncated zlib stream"));
    case Z_STREAM_ERROR:
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": invalid parameter"));
    default:
      return absl::InternalError(
          absl::StrCat(op, ": libz returned ", code, ", not a zlib code"));
  }
}

// zlib's result: Z_OK with a length the compartment wrote into its memory.
// The length is read once, then checked against the buffer it describes.
absl::StatusOr<size_t> CheckedLength(const mpkbox::Tainted<int>& code,
                                     const uLongf* length, size_t capacity,
                                     absl::string_view op) {
  return code.Verify([&](int c) -> absl::StatusOr<size_t> {
    if (c != Z_OK) return ZlibError(c, op);
    const uLongf n = *length;
    if (n > capacity) {
      return absl::InternalError(absl::StrCat(
          op, ": libz claims ", n, " bytes in a buffer of ", capacity));
    }
    return static_cast<size_t>(n);
  });
}

}  // namespace

absl::StatusOr<SandboxedZlib> SandboxedZlib::Create() {
  absl::StatusOr<std::unique_ptr<mpkbox::Compartment>> box =
      mpkbox::Compartment::Create(
          {.name = "zlib", .heap_limit_bytes = size_t{128} << 20});
  if (!box.ok()) return box.status();
  if (absl::Status s = (*box)->Load("libz.so.1"); !s.ok()) return s;
  SandboxedZlib z(*std::move(box));
  auto compress = z.box_->Lookup<decltype(::compress2)>("compress2");
  auto bound = z.box_->Lookup<decltype(::compressBound)>("compressBound");
  auto uncompress = z.box_->Lookup<decltype(::uncompress)>("uncompress");
  auto version = z.box_->Lookup<decltype(::zlibVersion)>("zlibVersion");
  for (const absl::Status& s : {compress.status(), bound.status(),
                                uncompress.status(), version.status()}) {
    if (!s.ok()) return s;
  }
  z.compress2_ = *compress;
  z.compress_bound_ = *bound;
  z.uncompress_ = *uncompress;
  z.version_ = *version;
  return z;
}

void SandboxedZlib::RecoverIfFaulted() {
  if (box_->last_fault() == nullptr) return;
  // The failed call's status already went to the caller; a Reset failure
  // shows up as the next call's kFailedPrecondition.
  box_->Reset().IgnoreError();
}

absl::StatusOr<std::string> SandboxedZlib::Compress(absl::string_view data,
                                                    int level) {
  absl::StatusOr<std::string> out = CompressInside(data, level);
  RecoverIfFaulted();
  return out;
}

absl::StatusOr<std::string> SandboxedZlib::Uncompress(
    absl::string_view compressed, size_t max_size) {
  absl::StatusOr<std::string> out = UncompressInside(compressed, max_size);
  RecoverIfFaulted();
  return out;
}

absl::StatusOr<std::string> SandboxedZlib::Version() {
  absl::StatusOr<mpkbox::Tainted<const char*>> v = box_->Call(version_);
  if (!v.ok()) {
    RecoverIfFaulted();
    return v.status();
  }
  // A short string in the compartment's own memory, or nothing.
  return v->Verify([&](const char* p) -> absl::StatusOr<std::string> {
    for (size_t n = 0; n < 32 && p != nullptr && box_->Contains(p + n, 1);
         ++n) {
      if (p[n] == '\0') return std::string(p, n);
    }
    return absl::InternalError("zlibVersion: not a string of the compartment");
  });
}

absl::StatusOr<std::string> SandboxedZlib::CompressInside(
    absl::string_view data, int level) {
  if (level < Z_DEFAULT_COMPRESSION || level > Z_BEST_COMPRESSION) {
    return absl::InvalidArgumentError(
        absl::StrCat("Compress: level ", level, " is outside -1..9"));
  }
  absl::StatusOr<mpkbox::Tainted<uLong>> bound =
      box_->Call(compress_bound_, static_cast<uLong>(data.size()));
  if (!bound.ok()) return bound.status();
  // zlib's bound is the input plus a little; anything else is refused.
  const size_t capacity = bound->Verify([&](uLong b) -> size_t {
    return b >= data.size() && b - data.size() <= data.size() / 64 + 64 ? b : 0;
  });
  if (capacity == 0) return absl::InternalError("compressBound: implausible");

  Scratch scratch(*box_);
  absl::StatusOr<Bytef*> src = scratch.Get<Bytef>(data.size(), data);
  absl::StatusOr<Bytef*> dst = scratch.Get<Bytef>(capacity);
  absl::StatusOr<uLongf*> length = scratch.Get<uLongf>(1);
  for (const absl::Status& s : {src.status(), dst.status(), length.status()}) {
    if (!s.ok()) return s;
  }
  **length = capacity;
  absl::StatusOr<mpkbox::Tainted<int>> code =
      box_->Call(compress2_, *dst, *length, static_cast<const Bytef*>(*src),
                 static_cast<uLong>(data.size()), level);
  if (!code.ok()) return code.status();
  absl::StatusOr<size_t> n =
      CheckedLength(*code, *length, capacity, "compress2");
  if (!n.ok()) return n.status();
  return std::string(reinterpret_cast<const char*>(*dst), *n);
}

absl::StatusOr<std::string> SandboxedZlib::UncompressInside(
    absl::string_view compressed, size_t max_size) {
  if (max_size > kMaxOutputBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Uncompress: max_size ", max_size, " exceeds ", kMaxOutputBytes));
  }
  Scratch scratch(*box_);
  absl::StatusOr<Bytef*> src =
      scratch.Get<Bytef>(compressed.size(), compressed);
  absl::StatusOr<Bytef*> dst = scratch.Get<Bytef>(max_size);
  absl::StatusOr<uLongf*> length = scratch.Get<uLongf>(1);
  for (const absl::Status& s : {src.status(), dst.status(), length.status()}) {
    if (!s.ok()) return s;
  }
  **length = max_size;
  absl::StatusOr<mpkbox::Tainted<int>> code =
      box_->Call(uncompress_, *dst, *length, static_cast<const Bytef*>(*src),
                 static_cast<uLong>(compressed.size()));
  if (!code.ok()) return code.status();
  absl::StatusOr<size_t> n =
      CheckedLength(*code, *length, max_size, "uncompress");
  if (!n.ok()) return n.status();
  return std::string(reinterpret_cast<const char*>(*dst), *n);
}
