// Isolation of loaded data (loader attacks: loader_attack_util.h): a
// plugin's code and data carry its compartment's key, RELRO is read-only
// inside, another compartment reads none of it, libz loaded inside is its
// own instance, and a fault report names the object loaded now.
#include <signal.h>
#include <string.h>
#include <zlib.h>

#include <cstdint>
#include <iostream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/fault_report.h"
#include "tests/loader_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::loader_attack {
namespace {

using ::mpkbox::internal::PkeyOfAddress;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

int ReadInt(const int* p) { return *p; }
const char* ReadPointer(const char* const* p) { return *p; }

TEST(LoaderAttackTest, PluginDataIsOnTheCompartmentsKey) {
  auto box = MakeBox({.name = "data"});
  ASSERT_TRUE(box->Load(Plugin("la_data")).ok());
  auto address = box->Lookup<int*()>("la_counter_address");
  auto bump = box->Lookup<int()>("la_bump_counter");
  auto counter = box->Lookup<int>("la_counter");
  ASSERT_TRUE(address.ok() && bump.ok() && counter.ok());
  int* p = Value(box->Call(*address));
  EXPECT_EQ(p, *counter);
  EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(p)), box->pkey());
  EXPECT_TRUE(box->Contains(p, sizeof(int)));
  EXPECT_EQ(*p, 41);
  EXPECT_EQ(Value(box->Call(*bump)), 42);  // writable from inside
  EXPECT_EQ(*p, 42);
  // Code, read-only data and .bss too.
  EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(*bump)), box->pkey());
  auto runs = box->Lookup<int>("la_ctor_runs");
  ASSERT_TRUE(runs.ok());
  EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(*runs)), box->pkey());
  EXPECT_EQ(**runs, 1);
}

TEST(LoaderAttackTest, RelroIsReadOnlyInside) {
  auto box = MakeBox({.name = "relro"});
  ASSERT_TRUE(box->Load(Plugin("la_data")).ok());
  auto table = box->Lookup<const char* const*()>("la_table_address");
  auto write = box->Lookup<void()>("la_write_table");
  auto len = box->Lookup<size_t(int)>("la_table_len");
  ASSERT_TRUE(table.ok() && write.ok() && len.ok());
  const char* const* t = Value(box->Call(*table));
  EXPECT_STREQ(t[0], "alpha");  // relocated
  EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(t)), box->pkey());
  EXPECT_EQ(Value(box->Call(*len, 2)), 5u);
  absl::Status s = box->Call(*write);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(Named(*box)));
  const FaultReport* f = box->last_fault();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->signal, SIGSEGV);
  EXPECT_EQ(f->code, SEGV_ACCERR) << f->what;  // its own key, read-only page
  EXPECT_EQ(f->address, reinterpret_cast<uintptr_t>(t));
  EXPECT_STREQ(t[0], "alpha");
  ASSERT_TRUE(box->Reset().ok());
  t = Value(box->Call(*table));
  EXPECT_STREQ(t[0], "alpha");
  EXPECT_EQ(Value(box->Call(*len, 0)), 5u);
}

TEST(LoaderAttackTest, AnotherCompartmentCannotReadPluginData) {
  auto a = MakeBox({.name = "owner"});
  auto b = MakeBox({.name = "snoop"});
  ASSERT_TRUE(a->Load(Plugin("la_data")).ok());
  auto counter = a->Lookup<int>("la_counter");
  auto table = a->Lookup<const char* const*()>("la_table_address");
  ASSERT_TRUE(counter.ok() && table.ok());
  absl::Status s =
      b->Call(&ReadInt, static_cast<const int*>(*counter)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("'snoop'"));
  ASSERT_NE(b->last_fault(), nullptr);
  EXPECT_EQ(b->last_fault()->code, SEGV_PKUERR);
  EXPECT_EQ(b->last_fault()->pkey, a->pkey());
  ASSERT_TRUE(b->Reset().ok());
  // The read-only RELRO data too.
  const char* const* t = Value(a->Call(*table));
  s = b->Call(&ReadPointer, t).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  ASSERT_NE(b->last_fault(), nullptr);
  EXPECT_EQ(b->last_fault()->pkey, a->pkey());
  // b loading the same plugin gets its own copy.
  ASSERT_TRUE(b->Reset().ok());
  ASSERT_TRUE(b->Load(Plugin("la_data")).ok());
  auto b_counter = b->Lookup<int>("la_counter");
  ASSERT_TRUE(b_counter.ok());
  EXPECT_NE(*b_counter, *counter);
  EXPECT_EQ(Value(b->Call(&ReadInt, static_cast<const int*>(*b_counter))), 41);
  EXPECT_EQ(Value(a->Call(&ReadInt, static_cast<const int*>(*counter))), 41);
}

TEST(LoaderAttackTest, LibzInACompartmentIsItsOwnInstance) {
  auto box = MakeBox({.name = "zlib-copy"});
  ASSERT_TRUE(box->Load("libz.so.1").ok());
  auto version = box->Lookup<decltype(::zlibVersion)>("zlibVersion");
  auto crc = box->Lookup<decltype(::crc32)>("crc32");
  ASSERT_TRUE(version.ok() && crc.ok());
  EXPECT_NE(reinterpret_cast<void*>(*version),
            reinterpret_cast<void*>(&::zlibVersion));
  EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(*version)), box->pkey());
  EXPECT_NE(PkeyOfAddress(reinterpret_cast<uintptr_t>(&::zlibVersion)),
            box->pkey());
  // Its string is its own copy, in its own image.
  const char* inside = Value(box->Call(*version));
  EXPECT_STREQ(inside, ::zlibVersion());
  EXPECT_NE(inside, ::zlibVersion());
  EXPECT_TRUE(box->Contains(inside, 1));
  auto* data = static_cast<Bytef*>(*box->Allocate(5));
  memcpy(data, "mpkbx", 5);
  EXPECT_EQ(Value(box->Call(*crc, uLong{0}, static_cast<const Bytef*>(data),
                            uInt{5})),
            ::crc32(0, reinterpret_cast<const Bytef*>("mpkbx"), 5));
}

std::string Backtrace(const FaultReport* f) {
  std::string all;
  if (f == nullptr) return all;
  for (const std::string& frame : f->backtrace) all += frame + "\n";
  return all;
}

// A fault report names the function of the object loaded now, also where
// another compartment had another object at the same address before.
// The symbolizer caches mappings; a reused compartment slot must not fool it.
TEST(LoaderAttackTest, FaultBacktraceNamesTheCurrentObject) {
  uintptr_t first_base = 0;
  {
    auto a = MakeBox({.name = "first-tenant"});
    ASSERT_TRUE(a->Load(Plugin("la_data")).ok());
    auto write = a->Lookup<void()>("la_write_table");
    ASSERT_TRUE(write.ok());
    first_base = reinterpret_cast<uintptr_t>(*write) & ~uintptr_t{0xfff};
    EXPECT_EQ(a->Call(*write).code(), absl::StatusCode::kAborted);
    EXPECT_THAT(Backtrace(a->last_fault()), HasSubstr("la_write_table"));
  }
  auto b = MakeBox({.name = "second-tenant"});
  ASSERT_TRUE(b->Load(Plugin("la_imports")).ok());
  auto call = b->Lookup<int()>("la_call_sigaction");
  ASSERT_TRUE(call.ok());
  std::cerr << "  first image page 0x" << std::hex << first_base
            << ", second 0x" << (reinterpret_cast<uintptr_t>(*call) & ~0xfffull)
            << std::dec << "\n";
  EXPECT_FALSE(b->Call(*call).ok());
  EXPECT_THAT(Backtrace(b->last_fault()), HasSubstr("la_call_sigaction"));
}

}  // namespace
}  // namespace mpkbox::loader_attack
