// Compartment::Load with Debian's own libraries: libz (a compress/uncompress
// round trip, its own instance), libpng with libz (a decode through the
// simplified API, and a corrupt image that fails cleanly), expat (a parse
// with element callbacks into the host), errno in loaded code, and Reset
// bringing loaded objects back. Attacks on the loader are in
// loader_attack_*_test.cc.
#include <expat.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/fault_report.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::internal::PkeyOfAddress;
using ::mpkbox::testing::Buffer;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;

TEST(LoaderTest, ZlibRoundTripInItsOwnInstance) {
  auto box = MakeBox({.name = "zlib"});
  ASSERT_TRUE(box->Load("libz.so.1").ok());
  auto compress = box->Lookup<decltype(::compress2)>("compress2");
  auto uncompress = box->Lookup<decltype(::uncompress)>("uncompress");
  auto version = box->Lookup<decltype(::zlibVersion)>("zlibVersion");
  ASSERT_TRUE(compress.ok() && uncompress.ok() && version.ok())
      << compress.status();
  // Its own copy: not the host's libz, and on the compartment's key.
  EXPECT_NE(reinterpret_cast<void*>(*compress),
            reinterpret_cast<void*>(&::compress2));
  EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(*compress)), box->pkey());
  EXPECT_TRUE(box->Contains(reinterpret_cast<void*>(*compress), 1));
  EXPECT_STREQ(Value(box->Call(*version)), ::zlibVersion());

  constexpr size_t kBytes = 200000;
  auto* src = Buffer<Bytef>(box.get(), kBytes);
  auto* packed = Buffer<Bytef>(box.get(), kBytes);
  auto* back = Buffer<Bytef>(box.get(), kBytes);
  auto* lens = Buffer<uLongf>(box.get(), 2);
  for (size_t i = 0; i < kBytes; ++i) src[i] = "mpkbox compresses "[i % 18];
  lens[0] = kBytes;
  EXPECT_EQ(Value(box->Call(*compress, packed, &lens[0],
                            static_cast<const Bytef*>(src), uLong{kBytes}, 9)),
            Z_OK);
  EXPECT_LT(lens[0], kBytes / 10);
  lens[1] = kBytes;
  EXPECT_EQ(Value(box->Call(*uncompress, back, &lens[1],
                            static_cast<const Bytef*>(packed), uLong{lens[0]})),
            Z_OK);
  EXPECT_EQ(lens[1], kBytes);
  EXPECT_EQ(memcmp(src, back, kBytes), 0);
  // The host's own libz still works, untouched.
  uLongf host_len = compressBound(16);
  std::vector<Bytef> host_out(host_len);
  EXPECT_EQ(::compress(host_out.data(), &host_len,
                       reinterpret_cast<const Bytef*>("host data, plain"), 16),
            Z_OK);
}

std::vector<uint8_t> MakePng(int width, int height,
                             std::vector<uint8_t>* pixels) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = width;
  image.height = height;
  image.format = PNG_FORMAT_RGBA;
  pixels->resize(PNG_IMAGE_SIZE(image));
  for (size_t i = 0; i < pixels->size(); ++i) (*pixels)[i] = i * 31 % 251;
  png_alloc_size_t size = 0;
  png_image_write_to_memory(&image, nullptr, &size, 0, pixels->data(), 0,
                            nullptr);
  std::vector<uint8_t> png(size);
  EXPECT_TRUE(png_image_write_to_memory(&image, png.data(), &size, 0,
                                        pixels->data(), 0, nullptr));
  png.resize(size);
  return png;
}

TEST(LoaderTest, LibpngDecodesAndRefusesACorruptImage) {
  auto box = MakeBox({.name = "png"});
  ASSERT_TRUE(box->Load("libpng16.so.16").ok());  // brings its own libz
  auto begin = box->Lookup<decltype(::png_image_begin_read_from_memory)>(
      "png_image_begin_read_from_memory");
  auto finish = box->Lookup<decltype(::png_image_finish_read)>(
      "png_image_finish_read");
  auto release = box->Lookup<decltype(::png_image_free)>("png_image_free");
  ASSERT_TRUE(begin.ok() && finish.ok() && release.ok());
  ASSERT_TRUE(box->Lookup<decltype(::inflate)>("inflate").ok());

  std::vector<uint8_t> pixels;
  const std::vector<uint8_t> png = MakePng(37, 23, &pixels);
  auto* data = Buffer<uint8_t>(box.get(), png.size());
  memcpy(data, png.data(), png.size());
  auto* image = Buffer<png_image>(box.get());
  image->version = PNG_IMAGE_VERSION;
  ASSERT_EQ(Value(box->Call(*begin, image, static_cast<png_const_voidp>(data),
                            png.size())),
            1)
      << image->message;
  EXPECT_EQ(image->width, 37u);
  EXPECT_EQ(image->height, 23u);
  image->format = PNG_FORMAT_RGBA;
  auto* out = Buffer<uint8_t>(box.get(), PNG_IMAGE_SIZE(*image));
  ASSERT_EQ(Value(box->Call(*finish, image, png_const_colorp{nullptr},
                            static_cast<void*>(out), png_int_32{0},
                            static_cast<void*>(nullptr))),
            1)
      << image->message;
  EXPECT_EQ(memcmp(out, pixels.data(), pixels.size()), 0);

  // A corrupt image: libpng's own error path (setjmp/longjmp) inside.
  memset(image, 0, sizeof(*image));
  image->version = PNG_IMAGE_VERSION;
  data[20] ^= 0x55;  // the IHDR CRC no longer matches
  data[33] ^= 0x55;
  const int ok = Value(box->Call(*begin, image,
                                 static_cast<png_const_voidp>(data),
                                 png.size()));
  EXPECT_EQ(ok, 0);
  EXPECT_NE(image->message[0], '\0');
  EXPECT_TRUE(box->Call(*release, image).ok());
  EXPECT_EQ(box->last_fault(), nullptr);
}

struct Seen {
  int starts = 0;
  int ends = 0;
  std::string names;
};
Seen* seen = nullptr;

void OnStart(Tainted<void*>, Tainted<const XML_Char*> name,
             Tainted<const XML_Char**>) {
  ++seen->starts;
  // Host code reading compartment memory it was handed: checked first.
  seen->names += name.Verify([](const XML_Char* n) {
    return n != nullptr && strlen(n) < 64 ? std::string(n) : std::string("?");
  });
  seen->names += ",";
}
void OnEnd(Tainted<void*>, Tainted<const XML_Char*>) { ++seen->ends; }

TEST(LoaderTest, ExpatParsesWithCallbacksIntoTheHost) {
  auto box = MakeBox({.name = "expat",
                      .syscalls = SyscallPolicy().AllowGetrandom()});
  ASSERT_TRUE(box->Load("libexpat.so.1").ok());
  auto create = box->Lookup<decltype(::XML_ParserCreate)>("XML_ParserCreate");
  auto handlers =
      box->Lookup<decltype(::XML_SetElementHandler)>("XML_SetElementHandler");
  auto parse = box->Lookup<decltype(::XML_Parse)>("XML_Parse");
  auto release = box->Lookup<decltype(::XML_ParserFree)>("XML_ParserFree");
  ASSERT_TRUE(create.ok() && handlers.ok() && parse.ok() && release.ok());
  auto start = box->RegisterCallback(&OnStart);
  auto end = box->RegisterCallback(&OnEnd);
  ASSERT_TRUE(start.ok() && end.ok());
  Seen s;
  seen = &s;

  XML_Parser parser =
      Value(box->Call(*create, static_cast<const XML_Char*>(nullptr)));
  ASSERT_NE(parser, nullptr);
  ASSERT_TRUE(box->Call(*handlers, parser,
                        reinterpret_cast<XML_StartElementHandler>(start->get()),
                        reinterpret_cast<XML_EndElementHandler>(end->get()))
                  .ok());
  const char kDoc[] = "<doc><item id='1'/><item id='2'><sub/></item></doc>";
  auto* doc = Buffer<char>(box.get(), sizeof(kDoc));
  memcpy(doc, kDoc, sizeof(kDoc));
  EXPECT_EQ(Value(box->Call(*parse, parser, static_cast<const char*>(doc),
                            static_cast<int>(strlen(kDoc)), 1)),
            XML_STATUS_OK);
  EXPECT_EQ(s.starts, 4);
  EXPECT_EQ(s.ends, 4);
  EXPECT_EQ(s.names, "doc,item,item,sub,");
  EXPECT_TRUE(box->Call(*release, parser).ok());
  seen = nullptr;
}

TEST(LoaderTest, ErrnoOfLoadedCodeIsTheCompartments) {
  auto box = MakeBox({.name = "errno", .heap_limit_bytes = 1 << 20});
  ASSERT_TRUE(box->Load(ERRNO_PLUGIN).ok());
  auto set_errno = box->Lookup<int(int)>("set_errno");
  auto malloc_errno = box->Lookup<int(unsigned long)>("malloc_errno");
  ASSERT_TRUE(set_errno.ok() && malloc_errno.ok());
  errno = 0;
  EXPECT_EQ(Value(box->Call(*set_errno, EDOM)), EDOM);  // key 0 is read-only
  EXPECT_EQ(errno, 0);  // the host's errno is its own
  EXPECT_EQ(Value(box->Call(*malloc_errno, 64ul << 20)), ENOMEM);
  EXPECT_EQ(Value(box->Call(*malloc_errno, 64ul)), 0);
}

// glibc's write is a cancellation point: in a process with a second thread
// (Runtime::Init starts one) it marks the thread descriptor, key 0, around
// the syscall, and it sets errno in TLS. Loaded code's write is the
// compartment's own (compartment_libc/syscalls.cc): the policy still
// decides, and errno lands in the compartment's slot.
TEST(LoaderTest, LoadedCodesWriteWorksInAThreadedProcess) {
  std::thread([] {}).join();  // a second thread, whatever Init did
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  auto box = MakeBox({.name = "writer",
                      .syscalls = SyscallPolicy().AllowWrite({fds[1], 99})});
  ASSERT_TRUE(box->Load(ERRNO_PLUGIN).ok());
  auto write_or_errno =
      box->Lookup<long(int, const void*, unsigned long)>("write_or_errno");
  ASSERT_TRUE(write_or_errno.ok());
  absl::StatusOr<void*> allocated = box->Allocate(4);
  ASSERT_TRUE(allocated.ok());
  void* text = *allocated;
  memcpy(text, "abc", 4);
  errno = 0;
  EXPECT_EQ(Value(box->Call(*write_or_errno, fds[1],
                            static_cast<const void*>(text), 3ul)),
            3);
  char got[4] = {};
  ASSERT_EQ(read(fds[0], got, 3), 3);
  EXPECT_STREQ(got, "abc");
  EXPECT_EQ(Value(box->Call(*write_or_errno, 99,
                            static_cast<const void*>(text), 3ul)),
            -EBADF);
  EXPECT_EQ(errno, 0);  // the host's errno is its own
  EXPECT_EQ(box->last_fault(), nullptr);
  close(fds[0]);
  close(fds[1]);
}

// qsort and qsort_r of loaded code: glibc's wrote errno and its sysconf
// cache (key 0) for arrays of 1 KiB and more, and faulted under
// Ambient::kReadOnly. The compartment's are glibc's stable merge sort: the
// native order, equal keys in their original order, on the stack below
// 1 KiB and on the compartment's heap above.
struct Record {
  int key;
  int seq;
  bool operator==(const Record& o) const {
    return key == o.key && seq == o.seq;
  }
};

int ByKey(const void* a, const void* b) {
  const int x = static_cast<const Record*>(a)->key;
  const int y = static_cast<const Record*>(b)->key;
  return (x > y) - (x < y);
}

TEST(LoaderTest, QsortOfLoadedCodeIsGlibcsStableOrder) {
  auto box = MakeBox({.name = "sort"});
  ASSERT_TRUE(box->Load(SORT_PLUGIN).ok());
  auto sort = box->Lookup<void(Record*, size_t)>("sort_records");
  auto sort_r = box->Lookup<void(Record*, size_t, int)>("sort_records_r");
  ASSERT_TRUE(sort.ok() && sort_r.ok());
  for (size_t n : {size_t{3}, size_t{100}, size_t{1000}}) {  // 24 B to 8 KB
    std::vector<Record> native(n);
    for (size_t i = 0; i < n; ++i) {
      native[i] = {static_cast<int>(i * 37 % 50), static_cast<int>(i)};
    }
    auto* inside = Buffer<Record>(box.get(), n);
    std::copy(native.begin(), native.end(), inside);
    ASSERT_TRUE(box->Call(*sort, inside, n).ok()) << n;
    qsort(native.data(), n, sizeof(Record), ByKey);
    EXPECT_EQ(std::vector<Record>(inside, inside + n), native) << n;
    for (size_t i = 1; i < n; ++i) {
      ASSERT_TRUE(inside[i - 1].key < inside[i].key ||
                  (inside[i - 1].key == inside[i].key &&
                   inside[i - 1].seq < inside[i].seq))
          << n << " at " << i;
    }
    ASSERT_TRUE(box->Call(*sort_r, inside, n, 1).ok()) << n;  // descending
    qsort_r(native.data(), n, sizeof(Record),
            [](const void* a, const void* b, void*) { return ByKey(b, a); },
            nullptr);
    EXPECT_EQ(std::vector<Record>(inside, inside + n), native) << n;
    EXPECT_GT(inside[0].key, inside[n - 1].key) << n;
  }
  EXPECT_EQ(box->last_fault(), nullptr);
}

TEST(LoaderTest, ResetBringsLoadedObjectsBackFresh) {
  auto box = MakeBox({.name = "again"});
  ASSERT_TRUE(box->Load(ERRNO_PLUGIN).ok());
  auto next = box->Lookup<int()>("next_counter");
  auto counter = box->Lookup<int>("counter");
  ASSERT_TRUE(next.ok() && counter.ok());
  EXPECT_EQ(PkeyOfAddress(reinterpret_cast<uintptr_t>(*counter)), box->pkey());
  EXPECT_EQ(Value(box->Call(*next)), 42);
  EXPECT_EQ(Value(box->Call(*next)), 43);
  ASSERT_TRUE(box->Reset().ok());
  // The same address, freshly initialized data.
  EXPECT_EQ(box->Lookup<int()>("next_counter").value(), *next);
  EXPECT_EQ(**counter, 41);
  EXPECT_EQ(Value(box->Call(*next)), 42);
}

TEST(LoaderTest, TwoCompartmentsHaveTwoCopies) {
  auto a = MakeBox({.name = "a"});
  auto b = MakeBox({.name = "b"});
  ASSERT_TRUE(a->Load(ERRNO_PLUGIN).ok());
  ASSERT_TRUE(b->Load(ERRNO_PLUGIN).ok());
  int* in_a = a->Lookup<int>("counter").value();
  int* in_b = b->Lookup<int>("counter").value();
  EXPECT_NE(in_a, in_b);
  EXPECT_EQ(Value(a->Call(a->Lookup<int()>("next_counter").value())), 42);
  EXPECT_EQ(*in_b, 41);
  EXPECT_FALSE(a->Contains(in_b, sizeof(int)));
}

TEST(LoaderTest, LookupOfAMissingSymbolSaysWhich) {
  auto box = MakeBox({.name = "lookup"});
  ASSERT_TRUE(box->Load("libz.so.1").ok());
  auto missing = box->Lookup<void()>("no_such_function");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()),
              ::testing::HasSubstr("no_such_function"));
  EXPECT_THAT(std::string(missing.status().message()),
              ::testing::HasSubstr("'lookup'"));
}

}  // namespace
}  // namespace mpkbox
