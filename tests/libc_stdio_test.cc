// stdio inside a compartment (issue 15, item 3): loaded code's stdout and
// stderr reach the host's sink a line at a time, within a budget; its FILE
// objects are its own; formatting and parsing work with errno; and neither
// a host address nor a forged FILE object makes the host read or write
// anything but the compartment's own bytes.
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

// After <stdio.h>: it uses FILE without including it.
#include <jpeglib.h>

#include <climits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpkbox/mpkbox.h"
#include "runtime/testing_switches.h"
#include "tests/test_util.h"

namespace mpkbox {
namespace {

using ::mpkbox::testing::Buffer;
using ::mpkbox::testing::MakeBox;
using ::mpkbox::testing::Value;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using Lines = std::vector<std::pair<StdioStream, std::string>>;

CompartmentOptions Collecting(const std::string& name, Lines* lines,
                              size_t budget = 1 << 20) {
  CompartmentOptions options;
  options.name = name;
  options.stdio_budget_bytes = budget;
  options.stdio_sink = [lines](StdioStream stream, absl::string_view line) {
    lines->emplace_back(stream, std::string(line));
  };
  return options;
}

std::vector<std::string> Of(const Lines& lines, StdioStream stream) {
  std::vector<std::string> out;
  for (const auto& [s, line] : lines) {
    if (s == stream) out.push_back(line);
  }
  return out;
}

template <typename Fn>
Fn* Inside(Compartment* box, const char* name) {
  absl::StatusOr<Fn*> f = box->Lookup<Fn>(name);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *f : nullptr;
}

TEST(LibcStdioTest, OutputReachesTheSinkLineByLine) {
  Lines lines;
  auto box = MakeBox(Collecting("stdio-lines", &lines));
  ASSERT_TRUE(box->Load(STDIO_PLUGIN).ok());
  auto print = Inside<int(int)>(box.get(), "print_mix");
  EXPECT_EQ(Value(box->Call(print, 7)), 12);  // fileno(stdout), fileno(stderr)
  EXPECT_THAT(Of(lines, StdioStream::kStdout),
              ElementsAre("printf 7", "puts", "fputs cd", "fw1", "fw2", "u"));
  EXPECT_THAT(Of(lines, StdioStream::kStderr),
              ElementsAre("to stderr x", "perror: No such file or directory"));
  const CompartmentStats stats = box->stats();
  EXPECT_EQ(stats.stdio_bytes, 79u);
  EXPECT_EQ(stats.stdio_dropped_bytes, 0u);
  EXPECT_EQ(box->last_fault(), nullptr);
}

// The default sink: the host's stderr, each line after the compartment's
// name; stderr's lines marked with "!".
TEST(LibcStdioTest, DefaultSinkIsTheHostsStderrWithTheName) {
  auto box = MakeBox({.name = "stdio-default"});
  ASSERT_TRUE(box->Load(STDIO_PLUGIN).ok());
  auto print = Inside<int(int)>(box.get(), "print_mix");
  ::testing::internal::CaptureStderr();
  const absl::StatusOr<Tainted<int>> r = box->Call(print, 3);
  const std::string captured = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(captured, HasSubstr("[stdio-default] printf 3\n"));
  EXPECT_THAT(captured, HasSubstr("[stdio-default]! to stderr x\n"));
  EXPECT_THAT(captured, HasSubstr("[stdio-default] fputs cd\n"));
}

// Past the budget, output is dropped and counted, whatever loaded code does.
TEST(LibcStdioTest, OutputPastTheBudgetIsDroppedAndCounted) {
  Lines lines;
  auto box = MakeBox(Collecting("stdio-budget", &lines, 100));
  ASSERT_TRUE(box->Load(STDIO_PLUGIN).ok());
  auto print = Inside<int(int)>(box.get(), "print_lines");
  EXPECT_EQ(Value(box->Call(print, 30)), 30);
  EXPECT_EQ(lines.size(), 9u);  // 9 * 11 bytes, then one byte of the 10th
  EXPECT_EQ(box->stats().stdio_bytes, 100u);
  EXPECT_EQ(box->stats().stdio_dropped_bytes, 330u - 100u);
  // Reset does not renew it; the partial line goes out.
  ASSERT_TRUE(box->Reset().ok());
  EXPECT_EQ(lines.size(), 10u);
  EXPECT_EQ(lines.back().second, "0");
  print = Inside<int(int)>(box.get(), "print_lines");
  EXPECT_EQ(Value(box->Call(print, 1)), 1);
  EXPECT_EQ(lines.size(), 10u);
  EXPECT_EQ(box->stats().stdio_dropped_bytes, 330u - 100u + 11u);
}

// Lines longer than the sink's 4096 bytes come in pieces: the host's
// memory use per compartment stays bounded.
TEST(LibcStdioTest, LongLinesComeInPieces) {
  Lines lines;
  auto box = MakeBox(Collecting("stdio-long", &lines));
  ASSERT_TRUE(box->Load(STDIO_PLUGIN).ok());
  auto fwrite_from = Inside<unsigned long(unsigned long, unsigned long)>(
      box.get(), "fwrite_from");
  char* text = Buffer<char>(box.get(), 10000);
  memset(text, 'y', 10000);
  EXPECT_EQ(Value(box->Call(fwrite_from, reinterpret_cast<unsigned long>(text),
                            10000ul)),
            10000ul);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].second, std::string(4096, 'y'));
  EXPECT_EQ(lines[1].second, std::string(4096, 'y'));
  box.reset();  // the rest goes out with the compartment
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[2].second, std::string(10000 - 2 * 4096, 'y'));
}

char host_secret[64] = "host secret: never in the sink";

// fwrite from host memory: the host finds the bytes are not the
// compartment's and ends the call; the sink never sees them. Without the
// check (a child process), the host itself would read its secret out to
// the sink, though the compartment cannot read it.
TEST(LibcStdioTest, FwriteOfHostMemoryIsRefused) {
  Lines lines;
  auto box = MakeBox(Collecting("stdio-host-buffer", &lines));
  ASSERT_TRUE(box->Load(STDIO_PLUGIN).ok());
  auto fwrite_from = Inside<unsigned long(unsigned long, unsigned long)>(
      box.get(), "fwrite_from");
  const std::string before = host_secret;
  absl::StatusOr<Tainted<unsigned long>> r = box->Call(
      fwrite_from, reinterpret_cast<unsigned long>(host_secret), 30ul);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied)
      << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("not the compartment's own"));
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("stdio-host-buffer"));
  EXPECT_THAT(lines, IsEmpty());
  EXPECT_EQ(std::string(host_secret), before);
  ASSERT_TRUE(box->Reset().ok());
  auto print = Inside<int(int)>(box.get(), "print_lines");
  EXPECT_EQ(Value(box->Call(print, 1)), 1);
  EXPECT_EQ(lines.size(), 1u);

  EXPECT_EXIT(
      {
        internal::SkipStdioMemoryCheckForTesting();
        auto child = MakeBox({.name = "unchecked"});
        if (!child->Load(STDIO_PLUGIN).ok()) _exit(2);
        auto f = Inside<unsigned long(unsigned long, unsigned long)>(
            child.get(), "fwrite_from");
        const bool ok =
            child->Call(f, reinterpret_cast<unsigned long>(host_secret), 30ul)
                .ok();
        child.reset();  // the partial line goes to the host's stderr
        _exit(ok ? 0 : 3);
      },
      ::testing::ExitedWithCode(0), "\\[unchecked\\] host secret: never in");
}

// The host's own FILE* (glibc's stderr) passed in: not one of the
// compartment's streams, so the call ends; the host's FILE is unchanged and
// nothing reached the host's stderr.
TEST(LibcStdioTest, HostFileObjectIsRefusedAndUnchanged) {
  Lines lines;
  auto box = MakeBox(Collecting("stdio-host-file", &lines));
  ASSERT_TRUE(box->Load(STDIO_PLUGIN).ok());
  auto put_to = Inside<int(unsigned long)>(box.get(), "put_to");
  FILE before;
  memcpy(&before, stderr, sizeof(FILE));
  ::testing::internal::CaptureStderr();
  absl::StatusOr<Tainted<int>> r =
      box->Call(put_to, reinterpret_cast<unsigned long>(stderr));
  const std::string captured = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(memcmp(&before, stderr, sizeof(FILE)), 0);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied)
      << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("not a stream of this compartment"));
  EXPECT_THAT(captured, ::testing::Not(HasSubstr("through a given FILE*")));
  EXPECT_THAT(lines, IsEmpty());
}

// A FILE object forged in compartment memory cannot name another stream
// than stdout and stderr to the host, nor write to a descriptor the policy
// does not allow: the host's fd 2 gets nothing.
TEST(LibcStdioTest, ForgedFileObjectCannotMakeTheHostWriteElsewhere) {
  Lines lines;
  auto box = MakeBox(Collecting("stdio-forged", &lines));
  ASSERT_TRUE(box->Load(STDIO_PLUGIN).ok());
  auto forged = Inside<int(unsigned, int)>(box.get(), "forged_put");
  // Control: a faithful copy of stdout writes to the sink.
  EXPECT_GE(Value(box->Call(forged, 1u, 1)), 0);
  EXPECT_EQ(lines.size(), 1u);

  absl::StatusOr<Tainted<int>> r = box->Call(forged, 7u, 1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied)
      << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("other than stdout and stderr"));
  ASSERT_TRUE(box->Reset().ok());

  forged = Inside<int(unsigned, int)>(box.get(), "forged_put");
  ::testing::internal::CaptureStderr();
  r = box->Call(forged, 3u, STDERR_FILENO);  // a descriptor stream on fd 2
  const std::string captured = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied)
      << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("write"));
  EXPECT_THAT(captured, ::testing::Not(HasSubstr("forged")));
  EXPECT_EQ(lines.size(), 1u);
}

// fopen goes through the files concern (CompartmentOpen): nothing is
// granted, so it returns NULL with ENOENT, as libcrypto's configuration
// load expects. Streams it cannot have fail with an errno too.
TEST(LibcStdioTest, FopenFailsCleanlyWithEnoent) {
  auto box = MakeBox({.name = "stdio-fopen"});
  ASSERT_TRUE(box->Load(STDIO_PLUGIN).ok());
  auto open = Inside<int()>(box.get(), "open_config");
  EXPECT_EQ(Value(box->Call(open)), ENOENT);
  auto read_stdin = Inside<int()>(box.get(), "read_stdin");
  EXPECT_EQ(Value(box->Call(read_stdin)), 7);  // getchar EOF, fgets NULL, feof
  auto others = Inside<long()>(box.get(), "other_streams");
  // tmpfile EACCES, freopen EACCES, popen ENOSYS.
  EXPECT_EQ(Value(box->Call(others)),
            (long{EACCES} * 1000 + EACCES) * 1000 + ENOSYS);
  EXPECT_EQ(box->last_fault(), nullptr);
}

// A file the policy grants, read through the compartment's own FILE
// functions (buffered reads, ungetc, ftell/fseek, feof, fread): the same
// answers as glibc's stdio natively.
TEST(LibcStdioTest, GrantedFileReadsLikeNative) {
  char dir[] = "/tmp/mpkbox_stdio_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/granted.txt";
  FILE* w = fopen(path.c_str(), "w");
  ASSERT_NE(w, nullptr);
  fputs("first line\nsecond line\nthird\n", w);
  fclose(w);

  CompartmentOptions options{.name = "stdio-file"};
  options.syscalls = SyscallPolicy().AllowReadFile(path);
  auto box = MakeBox(std::move(options));
  ASSERT_TRUE(box->Load(STDIO_PLUGIN).ok());
  auto read = Inside<int(const char*, char*, unsigned long)>(box.get(),
                                                           "read_file");
  char* in_path = Buffer<char>(box.get(), path.size() + 1);
  memcpy(in_path, path.c_str(), path.size() + 1);
  char* out = Buffer<char>(box.get(), 512);
  const int n = Value(box->Call(read, static_cast<const char*>(in_path), out,
                                512ul));

  void* native = dlopen(STDIO_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(native, nullptr) << dlerror();
  auto native_read = reinterpret_cast<int (*)(const char*, char*,
                                              unsigned long)>(
      dlsym(native, "read_file"));
  char expected[512];
  EXPECT_EQ(n, native_read(path.c_str(), expected, sizeof(expected)));
  EXPECT_STREQ(out, expected);
  EXPECT_THAT(std::string(out), HasSubstr("first line"));
  EXPECT_EQ(box->last_fault(), nullptr);
  unlink(path.c_str());
  rmdir(dir);
}

// asprintf on the compartment's heap, sscanf, and strtol's overflow with
// errno: the same text as the plugin computes natively.
TEST(LibcStdioTest, FormattingAndParsingMatchNative) {
  auto box = MakeBox({.name = "stdio-format"});
  ASSERT_TRUE(box->Load(STDIO_PLUGIN).ok());
  auto format = Inside<int(char*, unsigned long)>(box.get(), "format_things");
  char* out = Buffer<char>(box.get(), 512);
  const int n = Value(box->Call(format, out, 512ul));
  ASSERT_GT(n, 0);

  void* native = dlopen(STDIO_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(native, nullptr) << dlerror();
  auto native_format = reinterpret_cast<int (*)(char*, unsigned long)>(
      dlsym(native, "format_things"));
  char expected[512];
  EXPECT_EQ(n, native_format(expected, sizeof(expected)));
  EXPECT_STREQ(out, expected);
  EXPECT_THAT(std::string(out), HasSubstr("asprintf 42 str 2.50"));
  EXPECT_THAT(std::string(out),
              HasSubstr(absl::StrCat("|", LONG_MAX, " ", ERANGE)));
  EXPECT_EQ(box->last_fault(), nullptr);
}

// libjpeg's default warning handler prints with fprintf(stderr, ...): a
// stream with two stray bytes before a marker decodes with a warning,
// which reaches the sink.
std::vector<uint8_t> SmallJpeg() {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* out = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &out, &size);
  c.image_width = 8;
  c.image_height = 8;
  c.input_components = 1;
  c.in_color_space = JCS_GRAYSCALE;
  jpeg_set_defaults(&c);
  jpeg_start_compress(&c, TRUE);
  std::vector<uint8_t> row(8, 0x80);
  for (int y = 0; y < 8; ++y) {
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  std::vector<uint8_t> jpeg(out, out + size);
  jpeg_destroy_compress(&c);
  free(out);
  return jpeg;
}

TEST(LibcStdioTest, LibjpegWarningReachesTheSink) {
  Lines lines;
  auto box = MakeBox(Collecting("stdio-libjpeg", &lines));
  ASSERT_TRUE(box->Load("libjpeg.so.62").ok());
  Compartment* b = box.get();
  std::vector<uint8_t> jpeg = SmallJpeg();
  ASSERT_GT(jpeg.size(), 4u);
  jpeg.insert(jpeg.begin() + 2, {0x12, 0x34});  // after SOI
  auto* d = Buffer<jpeg_decompress_struct>(b);
  auto* derr = Buffer<jpeg_error_mgr>(b);
  d->err = Value(
      b->Call(Inside<decltype(jpeg_std_error)>(b, "jpeg_std_error"), derr));
  ASSERT_TRUE(b->Call(Inside<decltype(jpeg_CreateDecompress)>(
                          b, "jpeg_CreateDecompress"),
                      d, JPEG_LIB_VERSION, sizeof(jpeg_decompress_struct))
                  .ok());
  uint8_t* src = Buffer<uint8_t>(b, jpeg.size());
  memcpy(src, jpeg.data(), jpeg.size());
  ASSERT_TRUE(b->Call(Inside<decltype(jpeg_mem_src)>(b, "jpeg_mem_src"), d,
                      static_cast<const unsigned char*>(src),
                      static_cast<unsigned long>(jpeg.size()))
                  .ok());
  EXPECT_EQ(
      Value(b->Call(Inside<decltype(jpeg_read_header)>(b, "jpeg_read_header"),
                    d, TRUE)),
      JPEG_HEADER_OK);
  EXPECT_THAT(Of(lines, StdioStream::kStderr),
              ElementsAre(HasSubstr("2 extraneous bytes before marker")));
  EXPECT_EQ(d->err->num_warnings, 1);
  EXPECT_EQ(b->last_fault(), nullptr);
}

}  // namespace
}  // namespace mpkbox
