// Debian's pcre2, libmagic and libcrypto, unmodified, inside a compartment
// with key 0 read-only (issue 15, items 4 and 7), each against the same
// library called natively in the same test. Where one stops at a C library
// function another part of issue 15 delivers (pthread's locks, asprintf,
// fopen), the test checks that exact refusal, so it fails the day the
// function works and must be turned into the full comparison.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <magic.h>
#include <pcre2.h>
#include <openssl/evp.h>
#include <string.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/compartment_libc/bindings.h"
#include "tests/plugins/pcre2_client.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::Buffer;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::String;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

// ---- pcre2 ----

// pcre2's JIT needs executable memory, which nothing inside gets: its
// pcre2_jit_compile fails cleanly and pcre2_match falls back to the
// interpreter, with the native matches (the JIT's allocator takes a
// pthread mutex first: the threads part of issue 15).
TEST(LibcMiscLibraryTest, Pcre2JitFallsBackToTheInterpreter) {
  auto box = MakeBox({.name = "pcre2"});
  ASSERT_TRUE(box->Load(PCRE2_CLIENT).ok());
  auto match = INSIDE(box.get(), pcre2_client_match);
  auto* out = Buffer<Pcre2ClientResult>(box.get());
  struct Case {
    const char* pattern;
    const char* subject;
  };
  for (const Case& k :
       {Case{"(\\w+)@example\\.(?:com|org)", "mail bob@example.org now"},
        Case{"^(\\d{3})-\\d{4}$", "555-1234"}, Case{"a(b", "ab"},
        Case{"z+", "aaa"}}) {
    for (int jit : {0, 1}) {
      Pcre2ClientResult native{};
      const int native_rc = pcre2_client_match(k.pattern, k.subject, jit, &native);
      memset(out, 0, sizeof(*out));
      absl::StatusOr<Tainted<int>> r =
          box->Call(match, String(box.get(), k.pattern),
                    String(box.get(), k.subject), jit, out);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->UnverifiedValue("test"), native_rc) << k.pattern;
      if (native_rc != 0) continue;
      EXPECT_EQ(out->rc, native.rc) << k.pattern;
      for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(out->ovector[i], native.ovector[i]) << k.pattern;
      }
      if (jit) {
        EXPECT_EQ(native.jit, 0) << "the JIT works natively";
        EXPECT_EQ(out->jit, PCRE2_ERROR_NOMEMORY) << "no executable memory";
      }
    }
  }
  EXPECT_EQ(box->last_fault(), nullptr);
}

// ---- libmagic ----

// A 1x1 RGBA PNG's signature and IHDR chunk.
constexpr unsigned char kPng[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00,
    0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89};

std::vector<char> ReadFile(const char* path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

TEST(LibcMiscLibraryTest, LibmagicNamesAPngLikeNative) {
  // The compiled database, read by the host and copied in: the library
  // opens no file.
  const std::vector<char> db = ReadFile("/usr/lib/file/magic.mgc");
  ASSERT_GT(db.size(), 1000u);

  magic_t native = magic_open(MAGIC_NONE);
  ASSERT_NE(native, nullptr);
  void* native_buffers[] = {const_cast<char*>(db.data())};
  size_t native_sizes[] = {db.size()};
  ASSERT_EQ(magic_load_buffers(native, native_buffers, native_sizes, 1), 0)
      << magic_error(native);
  const std::string want = magic_buffer(native, kPng, sizeof(kPng));
  EXPECT_THAT(want, HasSubstr("PNG image data, 1 x 1"));
  magic_close(native);

  auto box = MakeBox({.name = "magic", .heap_limit_bytes = 256 << 20});
  ASSERT_TRUE(box->Load("libmagic.so.1").ok());
  auto open = INSIDE(box.get(), magic_open);
  auto load = INSIDE(box.get(), magic_load_buffers);
  auto buffer = INSIDE(box.get(), magic_buffer);
  auto error = INSIDE(box.get(), magic_error);
  auto close = INSIDE(box.get(), magic_close);
  magic_t m = Value(box->Call(open, MAGIC_NONE));
  ASSERT_NE(m, nullptr);
  char* copy = Buffer<char>(box.get(), db.size());
  memcpy(copy, db.data(), db.size());
  void** buffers = Buffer<void*>(box.get());
  size_t* sizes = Buffer<size_t>(box.get());
  buffers[0] = copy;
  sizes[0] = db.size();
  absl::StatusOr<Tainted<int>> loaded = box->Call(load, m, buffers, sizes, 1ul);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->UnverifiedValue("test"), 0)
      << Value(box->Call(error, m));
  unsigned char* png = Buffer<unsigned char>(box.get(), sizeof(kPng));
  memcpy(png, kPng, sizeof(kPng));
  absl::StatusOr<Tainted<const char*>> got =
      box->Call(buffer, m, static_cast<const void*>(png), sizeof(kPng));
  // Its descriptions are built with asprintf (the stdio part of issue 15).
  ASSERT_TRUE(got.ok()) << got.status();
  const char* text = got->UnverifiedValue("test reads it");
  ASSERT_NE(text, nullptr) << Value(box->Call(error, m));
  ASSERT_TRUE(box->Contains(text, strlen(text) + 1));
  EXPECT_EQ(std::string(text), want);
  EXPECT_TRUE(box->Call(close, m).ok());
  EXPECT_EQ(box->last_fault(), nullptr);
}

// ---- libcrypto ----

TEST(LibcMiscLibraryTest, LibcryptoSha256LikeNative) {
  const std::string message = "The quick brown fox jumps over the lazy dog";
  unsigned char want[EVP_MAX_MD_SIZE];
  unsigned int want_len = 0;
  EVP_MD_CTX* n = EVP_MD_CTX_new();
  ASSERT_EQ(EVP_DigestInit_ex(n, EVP_sha256(), nullptr), 1);
  ASSERT_EQ(EVP_DigestUpdate(n, message.data(), message.size()), 1);
  ASSERT_EQ(EVP_DigestFinal_ex(n, want, &want_len), 1);
  EVP_MD_CTX_free(n);
  ASSERT_EQ(want_len, 32u);

  auto box = MakeBox({.name = "crypto"});
  ASSERT_TRUE(box->Load("libcrypto.so.3").ok());
  auto ctx_new = INSIDE(box.get(), EVP_MD_CTX_new);
  auto sha256 = INSIDE(box.get(), EVP_sha256);
  auto init = INSIDE(box.get(), EVP_DigestInit_ex);
  auto update = INSIDE(box.get(), EVP_DigestUpdate);
  auto final = INSIDE(box.get(), EVP_DigestFinal_ex);
  auto ctx_free = INSIDE(box.get(), EVP_MD_CTX_free);
  EVP_MD_CTX* ctx = Value(box->Call(ctx_new));
  ASSERT_NE(ctx, nullptr);
  const EVP_MD* md = Value(box->Call(sha256));
  ASSERT_NE(md, nullptr);
  absl::StatusOr<Tainted<int>> r =
      box->Call(init, ctx, md, static_cast<ENGINE*>(nullptr));
  // Its initialisation runs once (pthread_once, the threads part of issue
  // 15), then looks for its configuration file, which must fail cleanly
  // (fopen returning NULL: the files and stdio parts).
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->UnverifiedValue("test"), 1);
  char* text = String(box.get(), message);
  EXPECT_EQ(Value(box->Call(update, ctx, static_cast<const void*>(text),
                            message.size())),
            1);
  unsigned char* out = Buffer<unsigned char>(box.get(), EVP_MAX_MD_SIZE);
  unsigned int* out_len = Buffer<unsigned int>(box.get());
  EXPECT_EQ(Value(box->Call(final, ctx, out, out_len)), 1);
  EXPECT_EQ(*out_len, want_len);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(out), 32),
            std::string(reinterpret_cast<char*>(want), 32));
  EXPECT_TRUE(box->Call(ctx_free, ctx).ok());
  EXPECT_EQ(box->last_fault(), nullptr);
}

}  // namespace
}  // namespace mpkbox
