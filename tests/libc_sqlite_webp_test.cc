// Debian's sqlite3 and libwebp, unmodified and in their default
// configuration, inside a compartment (issue 15, item 7), each compared
// with the same library called natively in the same test. Both take their
// mutexes through loaded code's pthread bindings
// (runtime/compartment_libc/threads.cc).
#include <sqlite3.h>
#include <webp/decode.h>
#include <webp/encode.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::Buffer;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

// A sequence of library calls runs natively...
struct NativeCall {
  template <typename Fn, typename... Args>
  auto operator()(Fn* fn, Args... args) const {
    return fn(args...);
  }
  // Memory the library may read and write.
  template <typename T>
  T* Memory(size_t n) {
    owned.emplace_back(sizeof(T) * n);
    return reinterpret_cast<T*>(owned.back().data());
  }
  std::vector<std::vector<uint8_t>> owned;
};

// ... or inside, through the gate; a failed call fails the test and
// returns a zero value.
struct InsideCall {
  Compartment* box;
  template <typename Fn, typename... Args>
  auto operator()(Fn* fn, Args... args) const {
    if constexpr (std::is_void_v<decltype(fn(args...))>) {
      absl::Status s = box->Call(fn, args...);
      EXPECT_TRUE(s.ok()) << s;
    } else {
      return Value(box->Call(fn, args...));
    }
  }
  template <typename T>
  T* Memory(size_t n) {
    return Buffer<T>(box, n);
  }
};

char* Copy(NativeCall& c, const std::string& s) {
  char* p = c.Memory<char>(s.size() + 1);
  memcpy(p, s.c_str(), s.size() + 1);
  return p;
}
char* Copy(InsideCall& c, const std::string& s) {
  char* p = c.Memory<char>(s.size() + 1);
  memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

// ---- sqlite3 ----------------------------------------------------------------

struct SqliteApi {
  decltype(::sqlite3_open)* open;
  decltype(::sqlite3_exec)* exec;
  decltype(::sqlite3_prepare_v2)* prepare;
  decltype(::sqlite3_step)* step;
  decltype(::sqlite3_column_count)* column_count;
  decltype(::sqlite3_column_text)* column_text;
  decltype(::sqlite3_finalize)* finalize;
  decltype(::sqlite3_close)* close;
  decltype(::sqlite3_errmsg)* errmsg;
};

SqliteApi NativeSqlite() {
  return {&sqlite3_open,         &sqlite3_exec,        &sqlite3_prepare_v2,
          &sqlite3_step,         &sqlite3_column_count, &sqlite3_column_text,
          &sqlite3_finalize,     &sqlite3_close,       &sqlite3_errmsg};
}

SqliteApi LoadedSqlite(Compartment* box) {
  return {INSIDE(box, sqlite3_open),         INSIDE(box, sqlite3_exec),
          INSIDE(box, sqlite3_prepare_v2),   INSIDE(box, sqlite3_step),
          INSIDE(box, sqlite3_column_count), INSIDE(box, sqlite3_column_text),
          INSIDE(box, sqlite3_finalize),     INSIDE(box, sqlite3_close),
          INSIDE(box, sqlite3_errmsg)};
}

// An in-memory database: a table, 1,000 rows inserted in one transaction,
// and a query over them, each row rendered as text; "error: ..." on the
// first failure.
template <typename Caller>
std::vector<std::string> SqliteSession(Caller& call, const SqliteApi& api) {
  std::vector<std::string> out;
  sqlite3** db = call.template Memory<sqlite3*>(1);
  if (int r = call(api.open, Copy(call, ":memory:"), db); r != SQLITE_OK) {
    return {absl::StrCat("error: open ", r)};
  }
  std::string script =
      "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, "
      "tag TEXT);"
      "BEGIN;";
  for (int i = 1; i <= 1000; ++i) {
    absl::StrAppend(&script, "INSERT INTO t(name, score, tag) VALUES('row",
                    i, "', ", i * 1.5, ", '", (i % 7 == 0 ? "seven" : "other"),
                    "');");
  }
  absl::StrAppend(&script, "COMMIT;");
  if (int r = call(api.exec, *db, Copy(call, script), nullptr, nullptr,
                   nullptr);
      r != SQLITE_OK) {
    return {absl::StrCat("error: exec ", r, " ", call(api.errmsg, *db))};
  }
  sqlite3_stmt** stmt = call.template Memory<sqlite3_stmt*>(1);
  const std::string query =
      "SELECT tag, count(*), sum(score), min(name), max(id), "
      "group_concat(id % 10, '') FROM t GROUP BY tag ORDER BY tag;";
  if (int r = call(api.prepare, *db, Copy(call, query), -1, stmt, nullptr);
      r != SQLITE_OK) {
    return {absl::StrCat("error: prepare ", r)};
  }
  int r;
  while ((r = call(api.step, *stmt)) == SQLITE_ROW) {
    std::string row;
    const int columns = call(api.column_count, *stmt);
    for (int c = 0; c < columns; ++c) {
      const unsigned char* text = call(api.column_text, *stmt, c);
      absl::StrAppend(&row, c > 0 ? "|" : "",
                      text != nullptr ? reinterpret_cast<const char*>(text)
                                      : "NULL");
    }
    out.push_back(row);
  }
  if (r != SQLITE_DONE) out.push_back(absl::StrCat("error: step ", r));
  call(api.finalize, *stmt);
  out.push_back(absl::StrCat("close ", call(api.close, *db)));
  return out;
}

TEST(LibcSqliteTest, InMemoryDatabaseMatchesNative) {
  NativeCall native;
  const std::vector<std::string> expected =
      SqliteSession(native, NativeSqlite());
  ASSERT_EQ(expected.size(), 3u) << expected[0];

  auto box = MakeBox({.name = "sqlite"});
  ASSERT_NE(box, nullptr);
  absl::Status loaded = box->Load("libsqlite3.so.0");
  ASSERT_TRUE(loaded.ok()) << loaded;
  InsideCall inside{box.get()};
  EXPECT_EQ(SqliteSession(inside, LoadedSqlite(box.get())), expected);
  if (box->last_fault() != nullptr) {
    ADD_FAILURE() << box->last_fault()->what;
  }
}

// sqlite3's default build is serialized (SQLITE_THREADSAFE=1): two host
// threads may share one connection, and its recursive mutexes keep them
// apart. Each inserts its rows in transactions of its own at once; every
// row arrives.
TEST(LibcSqliteTest, TwoThreadsShareOneConnection) {
  auto box = MakeBox({.name = "sqlite", .call_timeout = absl::Seconds(60)});
  ASSERT_NE(box, nullptr);
  absl::Status loaded = box->Load("libsqlite3.so.0");
  ASSERT_TRUE(loaded.ok()) << loaded;
  EXPECT_EQ(Value(box->Call(INSIDE(box.get(), sqlite3_threadsafe))), 1);
  InsideCall inside{box.get()};
  const SqliteApi api = LoadedSqlite(box.get());
  sqlite3** db = inside.Memory<sqlite3*>(1);
  ASSERT_EQ(inside(api.open, Copy(inside, ":memory:"), db), SQLITE_OK);
  ASSERT_EQ(inside(api.exec, *db, Copy(inside, "CREATE TABLE t(v INTEGER);"),
                   nullptr, nullptr, nullptr),
            SQLITE_OK);
  constexpr int kRows = 300;
  std::vector<char*> scripts;
  for (int thread = 0; thread < 2; ++thread) {
    std::string script = "BEGIN;";
    for (int i = 0; i < kRows; ++i) {
      absl::StrAppend(&script, "INSERT INTO t VALUES(", thread * kRows + i,
                      ");");
    }
    absl::StrAppend(&script, "COMMIT;");
    scripts.push_back(Copy(inside, script));
  }
  std::vector<std::thread> threads;
  for (int thread = 0; thread < 2; ++thread) {
    threads.emplace_back([&, thread] {
      // A transaction already open on the shared connection makes the
      // other's BEGIN fail: retried until it is its turn.
      int r;
      do {
        r = inside(api.exec, *db, scripts[thread], nullptr, nullptr, nullptr);
      } while (r == SQLITE_ERROR && box->last_fault() == nullptr);
      EXPECT_EQ(r, SQLITE_OK);
    });
  }
  for (std::thread& t : threads) t.join();
  sqlite3_stmt** stmt = inside.Memory<sqlite3_stmt*>(1);
  ASSERT_EQ(inside(api.prepare, *db,
                   Copy(inside, "SELECT count(*), sum(v) FROM t;"), -1, stmt,
                   nullptr),
            SQLITE_OK);
  ASSERT_EQ(inside(api.step, *stmt), SQLITE_ROW);
  const unsigned char* text = inside(api.column_text, *stmt, 1);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(text)),
            absl::StrCat((2 * kRows - 1) * kRows));
  inside(api.finalize, *stmt);
  EXPECT_EQ(inside(api.close, *db), SQLITE_OK);
}

// ---- libwebp ----------------------------------------------------------------

struct WebpApi {
  decltype(::WebPEncodeRGBA)* encode;
  decltype(::WebPEncodeLosslessRGBA)* encode_lossless;
  decltype(::WebPDecodeRGBA)* decode;
  decltype(::WebPFree)* free;
};

// A gradient with a few hard edges, 61 x 37 (odd sizes on purpose).
constexpr int kWidth = 61;
constexpr int kHeight = 37;
std::vector<uint8_t> Image() {
  std::vector<uint8_t> rgba(kWidth * kHeight * 4);
  for (int y = 0; y < kHeight; ++y) {
    for (int x = 0; x < kWidth; ++x) {
      uint8_t* p = &rgba[(y * kWidth + x) * 4];
      p[0] = static_cast<uint8_t>(x * 4);
      p[1] = static_cast<uint8_t>(y * 7);
      p[2] = static_cast<uint8_t>((x / 8 + y / 8) % 2 ? 200 : 30);
      p[3] = static_cast<uint8_t>(x < 5 ? 128 : 255);
    }
  }
  return rgba;
}

struct WebpResult {
  std::vector<uint8_t> lossy, lossless, decoded_lossy, decoded_lossless;
  int width = 0, height = 0;
  bool operator==(const WebpResult&) const = default;
};

template <typename Caller>
std::vector<uint8_t> Decode(Caller& call, const WebpApi& api,
                            const std::vector<uint8_t>& file, int* w,
                            int* h) {
  uint8_t* in = call.template Memory<uint8_t>(file.size());
  memcpy(in, file.data(), file.size());
  int* dims = call.template Memory<int>(2);
  uint8_t* pixels = call(api.decode, in, file.size(), &dims[0], &dims[1]);
  if (pixels == nullptr) return {};
  *w = dims[0];
  *h = dims[1];
  std::vector<uint8_t> out(pixels, pixels + size_t{4} * dims[0] * dims[1]);
  call(api.free, pixels);
  return out;
}

template <typename Caller>
WebpResult WebpSession(Caller& call, const WebpApi& api) {
  WebpResult r;
  const std::vector<uint8_t> image = Image();
  uint8_t* rgba = call.template Memory<uint8_t>(image.size());
  memcpy(rgba, image.data(), image.size());
  uint8_t** output = call.template Memory<uint8_t*>(1);
  size_t n = call(api.encode, rgba, kWidth, kHeight, kWidth * 4, 75.0f,
                  output);
  if (n != 0) r.lossy.assign(*output, *output + n);
  call(api.free, *output);
  n = call(api.encode_lossless, rgba, kWidth, kHeight, kWidth * 4, output);
  if (n != 0) r.lossless.assign(*output, *output + n);
  call(api.free, *output);
  r.decoded_lossy = Decode(call, api, r.lossy, &r.width, &r.height);
  r.decoded_lossless = Decode(call, api, r.lossless, &r.width, &r.height);
  return r;
}

TEST(LibcWebpTest, EncodeAndDecodeMatchNative) {
  NativeCall native;
  const WebpResult expected =
      WebpSession(native, {&WebPEncodeRGBA, &WebPEncodeLosslessRGBA,
                           &WebPDecodeRGBA, &WebPFree});
  ASSERT_FALSE(expected.lossy.empty());
  ASSERT_FALSE(expected.lossless.empty());
  EXPECT_EQ(expected.decoded_lossless, Image()) << "lossless round trip";

  auto box = MakeBox({.name = "webp"});
  ASSERT_NE(box, nullptr);
  absl::Status loaded = box->Load("libwebp.so.7");
  ASSERT_TRUE(loaded.ok()) << loaded;
  InsideCall inside{box.get()};
  const WebpResult got = WebpSession(
      inside,
      {INSIDE(box.get(), WebPEncodeRGBA), INSIDE(box.get(), WebPEncodeLosslessRGBA),
       INSIDE(box.get(), WebPDecodeRGBA), INSIDE(box.get(), WebPFree)});
  EXPECT_EQ(got.lossy, expected.lossy);
  EXPECT_EQ(got.lossless, expected.lossless);
  EXPECT_EQ(got.decoded_lossy, expected.decoded_lossy);
  EXPECT_EQ(got.decoded_lossless, Image());
  EXPECT_EQ(got.width, kWidth);
  EXPECT_EQ(got.height, kHeight);
  if (box->last_fault() != nullptr) {
    ADD_FAILURE() << box->last_fault()->what;
  }
}

// The advanced API with thread_level 1: natively libwebp analyses in a
// second thread. Inside, pthread_create returns EAGAIN and libwebp 1.2.4
// does not fall back to one thread: WebPEncode fails cleanly (returns 0,
// error_code still VP8_ENC_OK), without a fault, and the compartment goes
// on (the default, single-threaded, configuration is what runs inside).
struct WebpThreadedApi {
  decltype(::WebPConfigInitInternal)* config_init;
  decltype(::WebPPictureInitInternal)* picture_init;
  decltype(::WebPPictureImportRGBA)* import;
  decltype(::WebPMemoryWriterInit)* writer_init;
  decltype(::WebPMemoryWrite)* write;
  decltype(::WebPEncode)* encode;
  decltype(::WebPPictureFree)* picture_free;
};

template <typename Caller>
std::pair<int, std::vector<uint8_t>> ThreadedEncode(
    Caller& call, const WebpThreadedApi& api) {
  const std::vector<uint8_t> image = Image();
  uint8_t* rgba = call.template Memory<uint8_t>(image.size());
  memcpy(rgba, image.data(), image.size());
  WebPConfig* config = call.template Memory<WebPConfig>(1);
  WebPPicture* picture = call.template Memory<WebPPicture>(1);
  WebPMemoryWriter* writer = call.template Memory<WebPMemoryWriter>(1);
  if (!call(api.config_init, config, WEBP_PRESET_DEFAULT, 75.0f,
            WEBP_ENCODER_ABI_VERSION) ||
      !call(api.picture_init, picture, WEBP_ENCODER_ABI_VERSION)) {
    return {-1, {}};
  }
  config->thread_level = 1;
  config->segments = 4;
  picture->width = kWidth;
  picture->height = kHeight;
  if (!call(api.import, picture, rgba, kWidth * 4)) return {-2, {}};
  call(api.writer_init, writer);
  picture->writer = api.write;
  picture->custom_ptr = writer;
  const int ok = call(api.encode, config, picture);
  std::vector<uint8_t> out;
  if (ok) out.assign(writer->mem, writer->mem + writer->size);
  const int error = picture->error_code;
  call(api.picture_free, picture);
  return {ok ? 0 : 100 + error, out};
}

TEST(LibcWebpTest, ThreadedEncodeWithoutThreads) {
  NativeCall native;
  const auto expected = ThreadedEncode(
      native, {&WebPConfigInitInternal, &WebPPictureInitInternal,
               &WebPPictureImportRGBA, &WebPMemoryWriterInit, &WebPMemoryWrite,
               &WebPEncode, &WebPPictureFree});
  ASSERT_EQ(expected.first, 0);
  auto box = MakeBox({.name = "webp"});
  ASSERT_NE(box, nullptr);
  absl::Status loaded = box->Load("libwebp.so.7");
  ASSERT_TRUE(loaded.ok()) << loaded;
  InsideCall inside{box.get()};
  Compartment* b = box.get();
  const auto got = ThreadedEncode(
      inside, {INSIDE(b, WebPConfigInitInternal),
               INSIDE(b, WebPPictureInitInternal),
               INSIDE(b, WebPPictureImportRGBA), INSIDE(b, WebPMemoryWriterInit),
               INSIDE(b, WebPMemoryWrite), INSIDE(b, WebPEncode),
               INSIDE(b, WebPPictureFree)});
  EXPECT_EQ(got.first, 100 + VP8_ENC_OK) << "the refusal changed";
  EXPECT_TRUE(got.second.empty());
  EXPECT_EQ(box->last_fault(), nullptr);
  // Still usable: the same threaded encode natively, the default one inside.
  uint8_t* rgba = inside.Memory<uint8_t>(Image().size());
  memcpy(rgba, Image().data(), Image().size());
  uint8_t** output = inside.Memory<uint8_t*>(1);
  EXPECT_GT(inside(INSIDE(b, WebPEncodeRGBA), rgba, kWidth, kHeight,
                   kWidth * 4, 75.0f, output),
            0u);
}

}  // namespace
}  // namespace mpkbox
