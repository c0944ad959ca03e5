// wrapped_zlib: SandboxedZlib (sandboxed_zlib.h), a zlib-like C++ API whose
// every call runs Debian's libz.so.1 inside a compartment.
//
// It round-trips a few inputs and checks that the data comes back equal,
// then shows the host's checks at work: a corrupted stream, a truncated one
// and a too-small max_size are rejected with clean statuses, and the object
// keeps working after each.
//
// Exit code: 0 when every expectation held, 1 otherwise, 2 without PKU.
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "mpkbox/mpkbox.h"
#include "sandboxed_zlib.h"

namespace {

int failures = 0;

void Expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::printf("      UNEXPECTED: %s\n", what.c_str());
  }
}

// Deterministic bytes that do not compress.
std::string Noise(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 2463534242u;
  for (char& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

std::string Repeat(const std::string& s, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += s;
  return out;
}

void RoundTrip(SandboxedZlib& z, const std::string& name,
               const std::string& data) {
  absl::StatusOr<std::string> packed = z.Compress(data);
  absl::StatusOr<std::string> back =
      packed.ok() ? z.Uncompress(*packed, data.size()) : packed.status();
  const bool equal = back.ok() && *back == data;
  if (back.ok()) {
    std::printf("  round trip %-22s %7zu -> %7zu -> %7zu bytes, %s\n",
                name.c_str(), data.size(), packed->size(), back->size(),
                equal ? "equal" : "DIFFERENT");
  } else {
    std::printf("  round trip %-22s FAILED: %s\n", name.c_str(),
                back.status().ToString().c_str());
  }
  Expect(equal, name + " should come back equal");
}

// A bad input must fail with `expected`, and the next call must work.
void Rejects(SandboxedZlib& z, const std::string& what,
             const std::string& compressed, size_t max_size,
             absl::StatusCode expected) {
  absl::StatusOr<std::string> r = z.Uncompress(compressed, max_size);
  std::printf("  %-33s %s\n", what.c_str(),
              r.ok()
                  ? absl::StrCat("ACCEPTED (", r->size(), " bytes)").c_str()
                  : absl::StrCat("rejected: ", r.status().ToString()).c_str());
  Expect(!r.ok() && r.status().code() == expected,
         what + " should fail with " + absl::StatusCodeToString(expected));
  absl::StatusOr<std::string> again = z.Compress("still working");
  Expect(again.ok(), "the next call should work");
}

}  // namespace

int main() {
  if (!mpkbox::Runtime::IsSupported()) {
    std::printf("wrapped_zlib: no PKU on this machine: skipped\n");
    return 2;
  }
  absl::StatusOr<SandboxedZlib> z = SandboxedZlib::Create();
  if (!z.ok()) {
    std::printf("wrapped_zlib: %s\n", z.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::string> version = z->Version();
  std::printf(
      "wrapped_zlib: libz.so.1 %s loaded into compartment '%s' "
      "(key %d)\n",
      version.ok() ? version->c_str() : "(version unknown)",
      z->compartment().name().c_str(), z->compartment().pkey());
  Expect(version.ok(), "zlibVersion should be a string of the compartment");

  const std::vector<std::pair<std::string, std::string>> inputs = {
      {"(empty)", ""},
      {"\"hello, world\"", "hello, world"},
      {"repeated text", Repeat("mpkbox keeps libz in a compartment. ", 3000)},
      {"random bytes", Noise(64 << 10)},
  };
  for (const auto& [name, data] : inputs) RoundTrip(*z, name, data);

  const std::string text = Repeat("the quick brown fox jumps over it. ", 500);
  absl::StatusOr<std::string> packed = z->Compress(text, 9);
  Expect(packed.ok() && packed->size() > 32, "compressing the text");
  if (packed.ok() && packed->size() > 32) {
    std::string corrupt = *packed;
    for (size_t i = 8; i < 24; ++i) corrupt[i] ^= 0x5a;  // inside the data
    Rejects(*z, "corrupted stream:", corrupt, text.size(),
            absl::StatusCode::kDataLoss);
    Rejects(*z, "truncated stream:", packed->substr(0, packed->size() / 2),
            text.size(), absl::StatusCode::kDataLoss);
    Rejects(*z, "max_size below the data's size:", *packed, text.size() / 2,
            absl::StatusCode::kOutOfRange);
    Rejects(*z, "max_size above the host's limit:", *packed,
            SandboxedZlib::kMaxOutputBytes + 1,
            absl::StatusCode::kInvalidArgument);
  }

  const mpkbox::CompartmentStats stats = z->compartment().stats();
  std::printf(
      "  compartment heap: %zu bytes in use after all calls, peak %zu\n",
      stats.bytes_in_use, stats.peak_bytes);
  if (failures != 0) {
    std::printf("wrapped_zlib: %d expectation(s) FAILED\n", failures);
    return 1;
  }
  std::printf(
      "wrapped_zlib: %zu round trips equal, 4 bad inputs rejected "
      "cleanly; every outcome as expected\n",
      inputs.size());
  return 0;
}
