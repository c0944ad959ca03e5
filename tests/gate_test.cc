#include <gtest/gtest.h>

#include "mpkbox/mpkbox.h"
#include "runtime/pku.h"

namespace {

int Add(int a, int b) { return a + b; }
uint32_t Pkru() { return mpkbox::internal::ReadPkru(); }

TEST(Gate, Smoke) {
  auto box = mpkbox::Compartment::Create({.name = "smoke"});
  ASSERT_TRUE(box.ok()) << box.status();
  auto r = (*box)->Call(&Add, 2, 3);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->UnverifiedValue("test"), 5);
  auto p = (*box)->Call(&Pkru);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->UnverifiedValue("test"), (*box)->pkru());
  EXPECT_EQ(mpkbox::internal::ReadPkru(), 0u);
}

}  // namespace
