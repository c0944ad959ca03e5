// Debian's jansson, unmodified, inside a compartment with the default
// policy (issue 15, item 7), against the same library called natively.
// jansson seeds its hash table from /dev/urandom through open(); inside,
// open fails cleanly (ENOENT: nothing is granted) and it falls back to the
// time and the pid, as it was written to.
#include <jansson.h>
#include <string.h>
#include <sys/syscall.h>

#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::Buffer;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

constexpr char kDocument[] = R"({
  "name": "mpkbox \"box\" \u00e9",
  "count": -1234567890123,
  "ok": true,
  "nothing": null,
  "tags": ["pku", "sandbox", "", "x"],
  "nested": {"depth": 2, "list": [1, 2, 3, {"k": "v"}]}
})";

char* String(Compartment* box, const std::string& s) {
  char* p = Buffer<char>(box, s.size() + 1);
  memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

class JanssonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    box_ = MakeBox({.name = "jansson"});
    ASSERT_NE(box_, nullptr);
    absl::Status s = box_->Load("libjansson.so.4");
    ASSERT_TRUE(s.ok()) << s;
  }
  // json_loads inside: the root, and the error as jansson wrote it.
  json_t* Loads(const std::string& text, json_error_t** error) {
    *error = Buffer<json_error_t>(box_.get());
    return Value(box_->Call(INSIDE(box_.get(), json_loads),
                            static_cast<const char*>(String(box_.get(), text)),
                            size_t{0}, *error));
  }
  // A field of an object inside.
  json_t* Get(json_t* object, const char* key) {
    return Value(box_->Call(INSIDE(box_.get(), json_object_get),
                            static_cast<const json_t*>(object),
                            static_cast<const char*>(String(box_.get(), key))));
  }
  std::unique_ptr<Compartment> box_;
};

TEST_F(JanssonTest, ParsesADocumentAsNativeDoes) {
  json_error_t native_error;
  json_t* n = json_loads(kDocument, 0, &native_error);
  ASSERT_NE(n, nullptr) << native_error.text;

  json_error_t* error = nullptr;
  json_t* o = Loads(kDocument, &error);
  ASSERT_NE(o, nullptr) << error->text;

  auto string_value = INSIDE(box_.get(), json_string_value);
  auto integer_value = INSIDE(box_.get(), json_integer_value);
  auto array_size = INSIDE(box_.get(), json_array_size);
  auto array_get = INSIDE(box_.get(), json_array_get);
  auto object_size = INSIDE(box_.get(), json_object_size);
  auto dumps = INSIDE(box_.get(), json_dumps);
  auto c = [](json_t* j) { return static_cast<const json_t*>(j); };

  EXPECT_EQ(Value(box_->Call(object_size, c(o))), json_object_size(n));
  EXPECT_STREQ(Value(box_->Call(string_value, c(Get(o, "name")))),
               json_string_value(json_object_get(n, "name")));
  EXPECT_EQ(Value(box_->Call(integer_value, c(Get(o, "count")))),
            json_integer_value(json_object_get(n, "count")));
  EXPECT_EQ(Value(box_->Call(integer_value, c(Get(o, "count")))),
            -1234567890123);
  json_t* ok = Get(o, "ok");
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(ok->type, JSON_TRUE);  // jansson's singletons live inside
  EXPECT_EQ(Get(o, "nothing")->type, JSON_NULL);
  EXPECT_EQ(Get(o, "missing"), nullptr);
  json_t* tags = Get(o, "tags");
  json_t* ntags = json_object_get(n, "tags");
  ASSERT_EQ(Value(box_->Call(array_size, c(tags))), json_array_size(ntags));
  for (size_t i = 0; i < json_array_size(ntags); ++i) {
    json_t* t = Value(box_->Call(array_get, c(tags), i));
    EXPECT_STREQ(Value(box_->Call(string_value, c(t))),
                 json_string_value(json_array_get(ntags, i)));
  }
  json_t* list = Get(Get(o, "nested"), "list");
  json_t* last = Value(box_->Call(array_get, c(list), size_t{3}));
  EXPECT_STREQ(Value(box_->Call(string_value, c(Get(last, "k")))), "v");

  // Serialised back with sorted keys: byte for byte native's.
  char* text = Value(box_->Call(dumps, c(o), size_t{JSON_SORT_KEYS}));
  char* native_text = json_dumps(n, JSON_SORT_KEYS);
  ASSERT_NE(text, nullptr);
  EXPECT_STREQ(text, native_text);
  free(native_text);
  EXPECT_TRUE(box_->Call(INSIDE(box_.get(), json_delete), o).ok());
  json_decref(n);
}

TEST_F(JanssonTest, ReportsErrorsAsNativeDoes) {
  const std::string bad = R"({"a": [1, 2,, 3]})";
  json_error_t native_error;
  ASSERT_EQ(json_loads(bad.c_str(), 0, &native_error), nullptr);
  json_error_t* error = nullptr;
  EXPECT_EQ(Loads(bad, &error), nullptr);
  EXPECT_STREQ(error->text, native_error.text);
  EXPECT_EQ(error->line, native_error.line);
  EXPECT_EQ(error->column, native_error.column);
  EXPECT_EQ(error->position, native_error.position);
}

// Granted /dev/urandom, jansson seeds from it as it does natively: open,
// read and close of a granted character device inside.
TEST(JanssonPolicyTest, SeedsFromAGrantedUrandom) {
  auto box = MakeBox({.name = "jansson-urandom",
                      .syscalls = SyscallPolicy().AllowReadFile("/dev/urandom")});
  ASSERT_TRUE(box->Load("libjansson.so.4").ok());
  auto* error = Buffer<json_error_t>(box.get());
  json_t* o = Value(box->Call(INSIDE(box.get(), json_loads),
                              static_cast<const char*>(
                                  String(box.get(), R"({"a": [1, 2]})")),
                              size_t{0}, error));
  ASSERT_NE(o, nullptr) << error->text;
  EXPECT_EQ(Value(box->Call(INSIDE(box.get(), json_object_size),
                            static_cast<const json_t*>(o))),
            1u);
}

// The hash seed's open() really is made and answered by the policy: when
// the policy fails openat instead of denying it, the first object ends the
// call, naming the syscall.
TEST(JanssonPolicyTest, SeedOpenGoesThroughThePolicy) {
  auto box = MakeBox({.name = "jansson-fail",
                      .syscalls = SyscallPolicy().Fail(SYS_openat)});
  ASSERT_TRUE(box->Load("libjansson.so.4").ok());
  auto object = INSIDE(box.get(), json_object);
  auto r = box->Call(object);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("jansson-fail"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("openat"));
}

}  // namespace
}  // namespace mpkbox
