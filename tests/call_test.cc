// Typed calls: every supported argument and return type crosses the gate
// unchanged, and PKRU is the compartment's inside and the host's after.
#include <cfloat>
#include <climits>
#include <cstdint>

#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/keys/pku.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

enum class Color : uint8_t { kRed = 1, kBlue = 200 };

int64_t Sum6(int8_t a, uint8_t b, int16_t c, uint16_t d, int32_t e,
             int64_t f) {
  return a + b + c + d + e + f;
}
uint64_t Echo64(uint64_t v) { return v; }
int32_t Neg32(int32_t v) { return -v; }
bool Not(bool v) { return !v; }
Color Flip(Color c) { return c == Color::kRed ? Color::kBlue : Color::kRed; }
const char* Skip(const char* s, int n) { return s + n; }
double Mix(int a, double x, float y, long b, double z, float w) {
  return a * x + y + b * z + w;
}
float Half(float f) { return f / 2; }
double Sum8(double a, double b, double c, double d, double e, double f,
            double g, double h) {
  return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h;
}
// All 14 argument registers at once, each weighted so a swap shows.
double All14(long i1, long i2, long i3, long i4, long i5, long i6, double f1,
             double f2, double f3, double f4, double f5, double f6, double f7,
             float f8) {
  return i1 + 2 * i2 + 3 * i3 + 4 * i4 + 5 * i5 + 6 * i6 + 7 * f1 + 8 * f2 +
         9 * f3 + 10 * f4 + 11 * f5 + 12 * f6 + 13 * f7 + 14 * f8;
}
void Nothing() {}
uint32_t InsidePkru() { return internal::ReadPkru(); }
short ReturnsMinShort() { return SHRT_MIN; }
unsigned char ReturnsMaxByte() { return UCHAR_MAX; }

TEST(CallTest, IntegersOfEveryWidth) {
  auto box = MakeBox({.name = "ints"});
  EXPECT_EQ(Value(box->Call(&Sum6, -128, 255, -32768, 65535, INT32_MIN,
                              INT64_C(1) << 40)),
            -128 + 255 - 32768 + 65535 + int64_t{INT32_MIN} +
                (INT64_C(1) << 40));
  EXPECT_EQ(Value(box->Call(&Echo64, UINT64_MAX)), UINT64_MAX);
  EXPECT_EQ(Value(box->Call(&Echo64, 0x0123456789abcdefULL)),
            0x0123456789abcdefULL);
  EXPECT_EQ(Value(box->Call(&Neg32, INT32_MAX)), -INT32_MAX);
  EXPECT_EQ(Value(box->Call(&ReturnsMinShort)), SHRT_MIN);
  EXPECT_EQ(Value(box->Call(&ReturnsMaxByte)), UCHAR_MAX);
}

TEST(CallTest, BoolsEnumsAndPointers) {
  auto box = MakeBox({.name = "misc"});
  EXPECT_EQ(Value(box->Call(&Not, true)), false);
  EXPECT_EQ(Value(box->Call(&Not, false)), true);
  EXPECT_EQ(Value(box->Call(&Flip, Color::kRed)), Color::kBlue);
  EXPECT_EQ(Value(box->Call(&Flip, Color::kBlue)), Color::kRed);
  static const char kText[] = "hello, compartment";
  EXPECT_EQ(Value(box->Call(&Skip, kText, 7)), kText + 7);
  EXPECT_EQ(Value(box->Call(&Skip, nullptr, 0)), nullptr);
}

TEST(CallTest, FloatsAndDoubles) {
  auto box = MakeBox({.name = "floats"});
  EXPECT_EQ(Value(box->Call(&Half, 3.0f)), 1.5f);
  EXPECT_EQ(Value(box->Call(&Half, FLT_MAX)), FLT_MAX / 2);
  EXPECT_DOUBLE_EQ(Value(box->Call(&Mix, 2, 1.5, 0.25f, 3L, 0.5, 0.125f)),
                   2 * 1.5 + 0.25 + 3 * 0.5 + 0.125);
  EXPECT_DOUBLE_EQ(Value(box->Call(&Sum8, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0,
                                   8.0)),
                   Sum8(1, 2, 3, 4, 5, 6, 7, 8));
}

TEST(CallTest, AllFourteenRegisters) {
  auto box = MakeBox({.name = "all14"});
  EXPECT_DOUBLE_EQ(
      Value(box->Call(&All14, 1L, 2L, 3L, 4L, 5L, 6L, 0.5, 1.5, 2.5, 3.5, 4.5,
                      5.5, 6.5, 7.5f)),
      All14(1, 2, 3, 4, 5, 6, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5f));
}

TEST(CallTest, ImplicitConversionsLikeAPlainCall) {
  auto box = MakeBox({.name = "convert"});
  short s = -5;  // promoted, sign kept
  EXPECT_EQ(Value(box->Call(&Neg32, s)), 5);
  EXPECT_EQ(Value(box->Call(&Echo64, 7)), 7u);
  EXPECT_DOUBLE_EQ(Value(box->Call(&Sum8, 1, 1, 1, 1, 1, 1, 1, 1)), 36.0);
}

TEST(CallTest, VoidReturnsStatus) {
  auto box = MakeBox({.name = "void"});
  absl::Status s = box->Call(&Nothing);
  EXPECT_TRUE(s.ok()) << s;
}

TEST(CallTest, PkruInsideIsTheCompartmentsAndHostsIsRestored) {
  auto ro = MakeBox({.name = "ro", .ambient = Ambient::kReadOnly});
  auto rw = MakeBox({.name = "rw", .ambient = Ambient::kReadWrite});
  const uint32_t ro_inside = Value(ro->Call(&InsidePkru));
  EXPECT_EQ(ro_inside, ro->pkru());
  EXPECT_EQ(internal::ReadPkru(), 0u);
  EXPECT_EQ(Value(rw->Call(&InsidePkru)), rw->pkru());
  EXPECT_EQ(internal::ReadPkru(), 0u);

  // What the values mean: own key open, key 0 read-only (or not), every
  // other compartment's key closed.
  auto bits = [](uint32_t pkru, int key) { return (pkru >> (2 * key)) & 3; };
  EXPECT_EQ(bits(ro_inside, ro->pkey()), 0u);
  EXPECT_EQ(bits(ro_inside, 0), internal::kWriteDisable);
  EXPECT_EQ(bits(ro_inside, rw->pkey()), internal::kAccessDisable);
  EXPECT_EQ(bits(rw->pkru(), 0), 0u);
  EXPECT_EQ(bits(rw->pkru(), ro->pkey()), internal::kAccessDisable);
}

TEST(CallTest, TaintedVerifyRunsTheCheck) {
  auto box = MakeBox({.name = "verify"});
  auto r = box->Call(&Echo64, 1000);
  ASSERT_TRUE(r.ok());
  int checks = 0;
  uint64_t clamped = r->Verify([&](uint64_t v) {
    ++checks;
    return v > 100 ? 100 : v;
  });
  EXPECT_EQ(clamped, 100u);
  EXPECT_EQ(checks, 1);
}

// Tainted is plain host code: these run on any CPU.
TEST(TaintedTest, VerifyRunsTheCheckOnceAndReturnsItsResult) {
  const Tainted<int> t = internal::TaintedAccess::Make(-7);
  int checks = 0;
  const unsigned v = t.Verify([&](int raw) {
    ++checks;
    return raw < 0 ? 0u : static_cast<unsigned>(raw);
  });
  EXPECT_EQ(v, 0u);
  EXPECT_EQ(checks, 1);
}
MPKBOX_TEST_RUNS_WITHOUT_PKU(TaintedTest,
                             VerifyRunsTheCheckOnceAndReturnsItsResult);

TEST(TaintedTest, UnverifiedValueIsTheRawValue) {
  int x = 0;
  const Tainted<int*> t = internal::TaintedAccess::Make(&x);
  EXPECT_EQ(t.UnverifiedValue("the test compares pointers"), &x);
}
MPKBOX_TEST_RUNS_WITHOUT_PKU(TaintedTest, UnverifiedValueIsTheRawValue);

TEST(CallTest, ManyCallsKeepWorking) {
  auto box = MakeBox({.name = "many"});
  for (int i = 0; i < 100000; ++i) {
    auto r = box->Call(&Neg32, i);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->UnverifiedValue("test"), -i);
  }
}

TEST(CallTest, StackSizeIsRespected) {
  auto box = MakeBox({.name = "tiny", .stack_bytes = 16 << 10});
  EXPECT_TRUE(box->Call(&Nothing).ok());
  auto bad = Compartment::Create({.name = "too-small", .stack_bytes = 1024});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("too-small"), std::string::npos);
}

}  // namespace
}  // namespace mpkbox
