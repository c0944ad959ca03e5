// Thread-local storage and IFUNC in loaded code (docs/INTERNALS.md,
// "Loading"): each (thread, compartment) has its own TLS blocks in
// compartment memory, initialised from the object's image, gone at thread
// exit and Reset; IFUNC resolvers run inside and their choice is bound. The
// refused models are in loader_attack_refused_features_test.cc.
#include <atomic>
#include <latch>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/fault_report.h"
#include "tests/loader_attack_util.h"
#include "tests/test_util.h"

namespace mpkbox::loader_attack {
namespace {

using ::mpkbox::internal::PkeyOfAddress;
using ::mpkbox::testing::Buffer;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::HasSubstr;

// tls_plugin's functions.
struct Tls {
  int (*next)();
  int (*get)();
  void (*set)(int);
  int* (*counter_address)();
  long (*zeroed_add)(long);
  char* (*name_address)();
};

template <typename Fn>
Fn* Must(Compartment* box, const char* name) {
  absl::StatusOr<Fn*> f = box->Lookup<Fn>(name);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *f : nullptr;
}

Tls LookupTls(Compartment* box) {
  return Tls{Must<int()>(box, "tls_next"),
             Must<int()>(box, "tls_get"),
             Must<void(int)>(box, "tls_set"),
             Must<int*()>(box, "tls_counter_address"),
             Must<long(long)>(box, "tls_zeroed_add"),
             Must<char*()>(box, "tls_name_address")};
}

Tls LoadTls(Compartment* box) {
  absl::Status s = box->Load(Plugin("tls_plugin"));
  EXPECT_TRUE(s.ok()) << s;
  return LookupTls(box);
}

TEST(LoaderTlsTest, BlocksAreCompartmentMemoryInitialisedFromTheImage) {
  // Ambient::kReadOnly: the host's own TLS (key 0) is not writable inside.
  auto box = MakeBox({.name = "tls", .ambient = Ambient::kReadOnly});
  const Tls t = LoadTls(box.get());
  EXPECT_EQ(Value(box->Call(t.get)), 7);  // .tdata, general-dynamic
  EXPECT_EQ(Value(box->Call(t.next)), 8);
  int* counter = Value(box->Call(t.counter_address));
  EXPECT_TRUE(box->Contains(counter, sizeof(int)));
  EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(counter)), box->pkey());
  EXPECT_EQ(*counter, 8);
  char* name = Value(box->Call(t.name_address));  // .tdata, local-dynamic
  EXPECT_TRUE(box->Contains(name, 16));
  EXPECT_STREQ(name, "initial");
  EXPECT_EQ(Value(box->Call(t.zeroed_add, 5L)), 5);  // .tbss, local-dynamic
  EXPECT_EQ(Value(box->Call(t.zeroed_add, 5L)), 10);
  EXPECT_EQ(box->last_fault(), nullptr);
}

TEST(LoaderTlsTest, EachThreadHasItsOwnBlocks) {
  auto box = MakeBox({.name = "tls-threads"});
  const Tls t = LoadTls(box.get());
  ASSERT_TRUE(box->Call(t.set, 100).ok());
  int* mine = Value(box->Call(t.counter_address));
  constexpr int kRounds = 2000;
  std::atomic<int> results[2] = {0, 0};
  int* theirs[2] = {nullptr, nullptr};
  std::thread threads[2];
  std::latch both_done(2);  // both alive: a freed block is reused
  for (int i = 0; i < 2; ++i) {
    threads[i] = std::thread([&, i] {
      EXPECT_EQ(Value(box->Call(t.get)), 7);  // a fresh copy of the image
      for (int r = 0; r < kRounds; ++r) box->Call(t.next).IgnoreError();
      results[i] = Value(box->Call(t.get));
      theirs[i] = Value(box->Call(t.counter_address));
      both_done.arrive_and_wait();
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(results[0], 7 + kRounds);
  EXPECT_EQ(results[1], 7 + kRounds);
  EXPECT_NE(theirs[0], mine);
  EXPECT_NE(theirs[1], mine);
  EXPECT_NE(theirs[0], theirs[1]);
  EXPECT_EQ(Value(box->Call(t.get)), 100);
}

TEST(LoaderTlsTest, EachCompartmentHasItsOwnBlocks) {
  auto a = MakeBox({.name = "tls-a"});
  auto b = MakeBox({.name = "tls-b"});
  const Tls ta = LoadTls(a.get());
  const Tls tb = LoadTls(b.get());
  ASSERT_TRUE(a->Call(ta.set, 50).ok());
  EXPECT_EQ(Value(b->Call(tb.get)), 7);
  int* in_a = Value(a->Call(ta.counter_address));
  int* in_b = Value(b->Call(tb.counter_address));
  EXPECT_TRUE(a->Contains(in_a, sizeof(int)));
  EXPECT_FALSE(a->Contains(in_b, sizeof(int)));
  EXPECT_TRUE(b->Contains(in_b, sizeof(int)));
  EXPECT_EQ(Value(a->Call(ta.get)), 50);
}

// tls_user's code reaches tls_plugin's variable (DTPMOD64/DTPOFF64 against
// another object's symbol): the same block.
TEST(LoaderTlsTest, AnotherObjectsVariableIsTheSameBlock) {
  auto box = MakeBox({.name = "tls-user"});
  ASSERT_TRUE(box->Load(Plugin("tls_user")).ok());  // brings tls_plugin
  auto twice = Must<int()>(box.get(), "tls_user_double");
  auto get = Must<int()>(box.get(), "tls_get");
  EXPECT_EQ(Value(box->Call(twice)), 14);
  EXPECT_EQ(Value(box->Call(get)), 14);
}

TEST(LoaderTlsTest, ResetStartsFromTheImageAgain) {
  auto box = MakeBox({.name = "tls-reset"});
  Tls t = LoadTls(box.get());
  ASSERT_TRUE(box->Call(t.set, 55).ok());
  char* name = Value(box->Call(t.name_address));
  name[0] = 'X';
  ASSERT_TRUE(box->Reset().ok());
  t = LookupTls(box.get());  // the same addresses, reloaded
  EXPECT_EQ(Value(box->Call(t.get)), 7);
  EXPECT_STREQ(Value(box->Call(t.name_address)), "initial");
  EXPECT_EQ(Value(box->Call(t.zeroed_add, 1L)), 1);
}

TEST(LoaderTlsTest, ThreadExitFreesItsBlocks) {
  auto box = MakeBox({.name = "tls-exit"});
  const Tls t = LoadTls(box.get());
  ASSERT_EQ(Value(box->Call(t.next)), 8);  // this thread's blocks exist
  const size_t before = box->stats().bytes_in_use;
  size_t during = 0;
  std::thread([&] {
    EXPECT_EQ(Value(box->Call(t.next)), 8);
    EXPECT_EQ(Value(box->Call(t.zeroed_add, 1L)), 1);
    during = box->stats().bytes_in_use;
  }).join();
  EXPECT_GT(during, before);
  EXPECT_EQ(box->stats().bytes_in_use, before);
}

// Attack: __tls_get_addr with a module id the loader never handed out. The
// call ends as a contained fault; the compartment works after Reset.
TEST(LoaderTlsTest, ForgedModuleIdEndsTheCall) {
  auto box = MakeBox({.name = "tls-forged"});
  LoadTls(box.get());
  auto forged = Must<void*(unsigned long)>(box.get(), "tls_forged_module");
  for (unsigned long module : {0ul, 2ul, 33ul, ~0ul}) {
    absl::StatusOr<Tainted<void*>> r = box->Call(forged, module);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << module;
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr("a module the compartment has not loaded"));
    ASSERT_TRUE(box->Reset().ok());
  }
  EXPECT_EQ(Value(box->Call(Must<int()>(box.get(), "tls_get"))), 7);
  ExpectCompartmentWorks(box.get());
}

unsigned KeyBits(unsigned pkru, int key) { return (pkru >> (2 * key)) & 3; }

// The resolver runs inside: it records the PKRU it ran with.
TEST(LoaderIfuncTest, ResolverRunsInsideAndItsChoiceIsBound) {
  auto box = MakeBox({.name = "ifunc", .ambient = Ambient::kReadOnly});
  ASSERT_TRUE(box->Load(Plugin("la_ifunc")).ok());
  EXPECT_EQ(Value(box->Call(Must<int(int)>(box.get(), "la_ifunc_caller"), 1)),
            3);
  EXPECT_EQ(Value(box->Call(Must<int(int)>(box.get(), "la_ifunc"), 1)), 2);
  // A static IFUNC: R_X86_64_IRELATIVE.
  EXPECT_EQ(Value(box->Call(Must<int(int)>(box.get(), "la_local_caller"), 5)),
            50);
  const unsigned pkru = Value(
      box->Call(Must<unsigned()>(box.get(), "la_ifunc_resolver_pkru")));
  EXPECT_NE(pkru, ~0u) << "the resolver never ran";
  EXPECT_NE(pkru, 0u) << "the resolver ran with host rights";
  EXPECT_EQ(KeyBits(pkru, box->pkey()), 0u);
  EXPECT_EQ(KeyBits(pkru, 0), 2u);  // write-disabled: kReadOnly
  // Reset runs it again, inside.
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(Value(box->Call(Must<int(int)>(box.get(), "la_ifunc_caller"), 4)),
            6);
}

// An exported IFUNC nothing inside refers to: Lookup gives the resolver's
// choice, not the resolver.
TEST(LoaderIfuncTest, DefinitionAloneIsResolvedForLookup) {
  auto box = MakeBox({.name = "ifunc-only"});
  ASSERT_TRUE(box->Load(Plugin("la_ifunc_only")).ok());
  EXPECT_EQ(Value(box->Call(Must<int(int)>(box.get(), "la_ifunc_only"), 41)),
            42);
}

// dl_iterate_phdr inside lists the compartment's objects, not the host's
// (which it cannot even read); C++ unwinding through _dl_find_object is
// loader_cpp_test.cc's.
TEST(LoaderPhdrTest, DlIteratePhdrListsTheCompartmentsObjects) {
  auto box = MakeBox({.name = "phdr"});
  ASSERT_TRUE(box->Load(Plugin("tls_plugin")).ok());
  ASSERT_TRUE(box->Load(Plugin("phdr_plugin")).ok());
  auto count = Must<int(unsigned long*)>(box.get(), "phdr_count_objects");
  auto* base = Buffer<unsigned long>(box.get());
  EXPECT_EQ(Value(box->Call(count, base)), 2);
  EXPECT_NE(*base, 0u);
  EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(count), 1));
  EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(*base + 0x1000), 1));
}

}  // namespace
}  // namespace mpkbox::loader_attack
