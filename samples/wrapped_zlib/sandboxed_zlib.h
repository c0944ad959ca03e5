// SandboxedZlib: zlib's one-shot API, run in a compartment.
//
//   absl::StatusOr<SandboxedZlib> z = SandboxedZlib::Create();
//   absl::StatusOr<std::string> packed = z->Compress("some bytes");
//   absl::StatusOr<std::string> back = z->Uncompress(*packed, 1 << 20);
//
// Every call runs Debian's libz.so.1, loaded into the compartment with
// Compartment::Load (this program does not link libz). The inputs are
// copied into compartment memory, and what comes back (zlib's return code,
// the length it wrote) is checked before the host copies anything out. A
// fault inside is returned as a status, and the compartment is Reset, so
// the object stays usable. Not thread-safe.
#ifndef MPKBOX_SAMPLES_WRAPPED_ZLIB_SANDBOXED_ZLIB_H_
#define MPKBOX_SAMPLES_WRAPPED_ZLIB_SANDBOXED_ZLIB_H_

#include <zlib.h>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mpkbox/mpkbox.h"

class SandboxedZlib {
 public:
  // The most Uncompress writes, whatever max_size says: the compartment's
  // heap holds input and output.
  static constexpr size_t kMaxOutputBytes = size_t{32} << 20;

  static absl::StatusOr<SandboxedZlib> Create();

  SandboxedZlib(SandboxedZlib&&) = default;
  SandboxedZlib& operator=(SandboxedZlib&&) = default;

  // zlib's version string, as the loaded libz reports it.
  absl::StatusOr<std::string> Version();

  // A zlib stream (compress2). kInvalidArgument for a level outside -1..9.
  absl::StatusOr<std::string> Compress(absl::string_view data,
                                       int level = Z_DEFAULT_COMPRESSION);

  // The data of a zlib stream (uncompress). kDataLoss for a corrupt or
  // truncated stream, kOutOfRange if it holds more than max_size bytes,
  // kInvalidArgument if max_size exceeds kMaxOutputBytes.
  absl::StatusOr<std::string> Uncompress(absl::string_view compressed,
                                         size_t max_size);

  mpkbox::Compartment& compartment() { return *box_; }

 private:
  explicit SandboxedZlib(std::unique_ptr<mpkbox::Compartment> box)
      : box_(std::move(box)) {}

  // The calls proper. Their compartment memory is freed when they return.
  absl::StatusOr<std::string> CompressInside(absl::string_view data, int level);
  absl::StatusOr<std::string> UncompressInside(absl::string_view compressed,
                                               size_t max_size);
  // After a fault the compartment refuses calls until Reset. Called once a
  // call's memory is freed: Reset drops the heap, and a later Free of an old
  // address could hit a new allocation.
  void RecoverIfFaulted();

  std::unique_ptr<mpkbox::Compartment> box_;
  // Functions of the compartment's libz (valid across Reset).
  decltype(&::compress2) compress2_ = nullptr;
  decltype(&::compressBound) compress_bound_ = nullptr;
  decltype(&::uncompress) uncompress_ = nullptr;
  decltype(&::zlibVersion) version_ = nullptr;
};

#endif  // MPKBOX_SAMPLES_WRAPPED_ZLIB_SANDBOXED_ZLIB_H_
