// plugin_host: three plugins, each loaded with Compartment::Load into its
// own compartment, and what becomes of each.
//
//   plugin_host [PLUGIN_DIR]
//
// - word_count (well-behaved) counts words and reports through host_report,
//   a host function it imports: the host Exposes it before the Load.
// - config_reader (buggy) writes through a null pointer on a line without
//   '='. The fault is contained and reported; after Reset the same
//   compartment reads the next config.
// - escape (malicious) tries four ways out: a write through the pointer to
//   host state the host handed it as an opaque handle, a read of the host
//   heap through a pointer the host passed by mistake, fopen (which opens
//   only what the files policy grants: nothing), and a jump to the WRPKRU instruction in libc's
//   pkey_set. Each is stopped, and the host checks that its memory is
//   unchanged.
//
// The three compartments stay alive together, each with its own key.
//
// Exit code: 0 when every outcome is the expected one, 1 otherwise, 2
// without PKU.
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "mpkbox/mpkbox.h"

#ifndef PLUGIN_DIR
#define PLUGIN_DIR "."
#endif

namespace {

int failures = 0;

void Expect(bool ok, absl::string_view what) {
  if (!ok) {
    ++failures;
    std::printf("      UNEXPECTED: %s\n", std::string(what).c_str());
  }
}

// "ABORTED, SIGSEGV at 0x0 (unmapped)" plus the report: what the host logs
// about a failed call. Read before Reset, which clears the report.
std::string Describe(const absl::Status& s, const mpkbox::Compartment& box) {
  std::string out = absl::StatusCodeToString(s.code());
  const mpkbox::FaultReport* f = box.last_fault();
  if (f == nullptr) return absl::StrCat(out, ": ", s.message());
  // The kind, address and key of a fault (a refused import or syscall is
  // reported by its status alone).
  const char* sig = f->signal != 0 ? sigabbrev_np(f->signal) : nullptr;
  if (s.code() == absl::StatusCode::kAborted && sig != nullptr) {
    absl::StrAppend(&out, ", SIG", sig);
    if ((f->signal == SIGSEGV || f->signal == SIGBUS) && f->code != SI_KERNEL) {
      absl::StrAppendFormat(&out, " at 0x%x (%s)", f->address, f->key_owner);
    }
  }
  absl::StrAppend(&out, "\n      report: ", f->what);
  return out;
}

// A plugin in its own compartment, loaded from PLUGIN_DIR.
absl::StatusOr<std::unique_ptr<mpkbox::Compartment>> LoadPlugin(
    const std::string& dir, const std::string& name,
    absl::FunctionRef<absl::Status(mpkbox::Compartment&)> before_load =
        [](mpkbox::Compartment&) { return absl::OkStatus(); }) {
  absl::StatusOr<std::unique_ptr<mpkbox::Compartment>> box =
      mpkbox::Compartment::Create({.name = name});
  if (!box.ok()) return box.status();
  if (absl::Status s = before_load(**box); !s.ok()) return s;
  if (absl::Status s = (*box)->Load(absl::StrCat(dir, "/", name, ".so"));
      !s.ok()) {
    return s;
  }
  std::printf("  loaded %s.so into compartment '%s' (key %d)\n", name.c_str(),
              (*box)->name().c_str(), (*box)->pkey());
  return box;
}

// Compartment memory holding a copy of `text`, NUL-terminated.
absl::StatusOr<char*> CopyIn(mpkbox::Compartment& box, absl::string_view text) {
  absl::StatusOr<void*> p = box.Allocate(text.size() + 1);
  if (!p.ok()) return p.status();
  std::memcpy(*p, text.data(), text.size());
  static_cast<char*>(*p)[text.size()] = '\0';
  return static_cast<char*>(*p);
}

// ---- word_count: well-behaved ----------------------------------------------

// The host's own count, to check the plugin's answer against.
long CountWords(absl::string_view text) {
  long words = 0;
  bool in_word = false;
  for (char c : text) {
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    words += letter && !in_word;
    in_word = letter;
  }
  return words;
}

mpkbox::Compartment* word_count_box = nullptr;
int reports = 0;

// host_report, as word_count imports it. `what` is a pointer from the
// compartment: read only if it is a short string in the compartment's own
// memory.
void HostReport(mpkbox::Tainted<const char*> what,
                mpkbox::Tainted<long> value) {
  ++reports;
  const std::string name = what.Verify([](const char* p) -> std::string {
    for (size_t n = 0; n < 32; ++n) {
      if (p == nullptr || !word_count_box->Contains(p + n, 1)) break;
      if (p[n] == '\0') return std::string(p, n);
    }
    return "(refused: not a short string of the compartment)";
  });
  std::printf("      host_report(\"%s\", %ld)\n", name.c_str(),
              value.UnverifiedValue("only printed"));
}

std::unique_ptr<mpkbox::Compartment> RunWordCount(const std::string& dir) {
  std::printf("[1] word_count: well-behaved, calls back into the host\n");
  absl::StatusOr<std::unique_ptr<mpkbox::Compartment>> box =
      LoadPlugin(dir, "word_count", [](mpkbox::Compartment& b) {
        // Before Load: the plugin's import of host_report binds to this.
        return b.Expose("host_report", &HostReport);
      });
  if (!box.ok()) {
    Expect(false, box.status().ToString());
    return nullptr;
  }
  word_count_box = box->get();
  const absl::string_view text =
      "Plugins run in compartments,\nisolated by protection keys.\n"
      "Their callbacks arrive tainted.\n";
  absl::StatusOr<char*> in = CopyIn(**box, text);
  if (!in.ok()) {
    Expect(false, in.status().ToString());
    return *std::move(box);
  }
  auto run = (*box)->Lookup<long(const char*, size_t)>("plugin_run");
  if (!run.ok()) {
    Expect(false, run.status().ToString());
    return *std::move(box);
  }
  absl::StatusOr<mpkbox::Tainted<long>> words =
      (*box)->Call(*run, static_cast<const char*>(*in), text.size());
  if (!words.ok()) {
    std::printf("      FAILED: %s\n", Describe(words.status(), **box).c_str());
    Expect(false, "word_count should succeed");
    return *std::move(box);
  }
  // The host can count too here; a real host would bound it by the size.
  const long expected = CountWords(text);
  const bool right = words->Verify([&](long n) { return n == expected; });
  std::printf("    result: %ld words, %s; %d callbacks\n",
              words->UnverifiedValue("printed"),
              right ? "as the host counts them" : "WRONG", reports);
  Expect(right, "word_count should count the words as the host does");
  Expect(reports == 3, "word_count should call host_report 3 times");
  (*box)->Free(*in);
  word_count_box = nullptr;
  return *std::move(box);
}

// ---- config_reader: buggy --------------------------------------------------

// Runs config_reader on `config`: the number of settings, or the failure.
absl::StatusOr<long> ReadConfig(mpkbox::Compartment& box,
                                absl::string_view config) {
  absl::StatusOr<char*> in = CopyIn(box, config);
  if (!in.ok()) return in.status();
  auto run = box.Lookup<long(char*)>("plugin_run");
  if (!run.ok()) return run.status();
  absl::StatusOr<mpkbox::Tainted<long>> settings = box.Call(*run, *in);
  box.Free(*in);
  if (!settings.ok()) return settings.status();
  // At most one setting per two bytes ("k=" lines).
  const long bound = static_cast<long>(config.size() / 2);
  return settings->Verify([&](long n) -> absl::StatusOr<long> {
    if (n < 0 || n > bound) {
      return absl::DataLossError(absl::StrCat("implausible count ", n));
    }
    return n;
  });
}

std::unique_ptr<mpkbox::Compartment> RunConfigReader(const std::string& dir) {
  std::printf("[2] config_reader: buggy, crashes on a line without '='\n");
  absl::StatusOr<std::unique_ptr<mpkbox::Compartment>> box =
      LoadPlugin(dir, "config_reader");
  if (!box.ok()) {
    Expect(false, box.status().ToString());
    return nullptr;
  }
  mpkbox::Compartment& b = **box;
  const absl::string_view good =
      "# sample\nname=mpkbox\nkeys=15\nmode=strict\n";
  const absl::string_view bad = "name=mpkbox\nthis line has no equals sign\n";

  absl::StatusOr<long> n = ReadConfig(b, good);
  std::printf("    good config: %s\n",
              n.ok() ? absl::StrCat(*n, " settings").c_str()
                     : Describe(n.status(), b).c_str());
  Expect(n.ok() && *n == 3, "the good config has 3 settings");

  n = ReadConfig(b, bad);
  std::printf(
      "    config with a line without '=': %s\n",
      n.ok() ? absl::StrCat(*n, " settings").c_str()
             : absl::StrCat("CONTAINED: ", Describe(n.status(), b)).c_str());
  Expect(!n.ok() && n.status().code() == absl::StatusCode::kAborted,
         "the null dereference should end the call with kAborted");
  Expect(b.last_fault() != nullptr && b.last_fault()->signal == SIGSEGV &&
             b.last_fault()->address == 0,
         "the report should name SIGSEGV at address 0");

  absl::StatusOr<long> refused = ReadConfig(b, good);
  std::printf("    before Reset: %s\n",
              refused.ok()
                  ? "accepted (?)"
                  : absl::StatusCodeToString(refused.status().code()).c_str());
  Expect(refused.status().code() == absl::StatusCode::kFailedPrecondition,
         "a faulted compartment refuses calls until Reset");

  absl::Status reset = b.Reset();
  n = ReadConfig(b, good);
  std::printf("    after Reset: %s\n",
              n.ok() ? absl::StrCat("good config: ", *n, " settings").c_str()
                     : Describe(n.status(), b).c_str());
  Expect(reset.ok() && n.ok() && *n == 3,
         "after Reset the compartment reads configs again");
  return *std::move(box);
}

// ---- escape: malicious ------------------------------------------------------

// Host state the escape plugin goes after: a global and a heap buffer (both
// on the trusted key: compartments can neither read nor write them).
volatile long host_state = 0;

struct Attack {
  std::string what;
  absl::StatusCode expected;
  std::string must_mention;  // in the status message
};

std::unique_ptr<mpkbox::Compartment> RunEscape(const std::string& dir) {
  std::printf("[3] escape: malicious, tries to get out\n");
  auto secret = std::make_unique<unsigned char[]>(64);
  std::memcpy(secret.get(), "host password: hunter2", 23);

  absl::StatusOr<std::unique_ptr<mpkbox::Compartment>> box =
      LoadPlugin(dir, "escape");
  if (!box.ok()) {
    Expect(false, box.status().ToString());
    return nullptr;
  }
  mpkbox::Compartment& b = **box;
  // The opaque handle travels as an integer: Call refuses pointer arguments
  // into the host's memory (read_host_heap below shows it).
  auto write_host = b.Lookup<long(uintptr_t)>("write_host_memory");
  auto read_heap = b.Lookup<long(const unsigned char*)>("read_host_heap");
  auto open_file = b.Lookup<long()>("open_file");
  auto jump = b.Lookup<long()>("jump_to_wrpkru");
  for (const absl::Status& s : {write_host.status(), read_heap.status(),
                                open_file.status(), jump.status()}) {
    if (!s.ok()) {
      Expect(false, s.ToString());
      return *std::move(box);
    }
  }

  int stopped = 0;
  auto attempt = [&](const Attack& a,
                     const absl::StatusOr<mpkbox::Tainted<long>>& r) {
    const bool ok = !r.ok() && r.status().code() == a.expected &&
                    absl::StrContains(r.status().message(), a.must_mention);
    stopped += ok;
    const std::string expected =
        absl::StrCat(absl::StatusCodeToString(a.expected), " mentioning \"",
                     a.must_mention, "\"");
    std::printf(
        "    %s:\n      %s %s\n", a.what.c_str(),
        ok ? "STOPPED:" : "NOT STOPPED AS EXPECTED:",
        r.ok()
            ? absl::StrCat("returned ", r->UnverifiedValue("printed")).c_str()
            : Describe(r.status(), b).c_str());
    Expect(ok, absl::StrCat(a.what, ": expected ", expected));
    // A faulted compartment refuses calls until Reset.
    if (absl::Status s = b.Reset(); !s.ok()) Expect(false, s.ToString());
  };

  attempt({absl::StrFormat("write through the host-state handle %p",
                           static_cast<void*>(const_cast<long*>(&host_state))),
           absl::StatusCode::kAborted,
           absl::StrFormat("0x%x (key ",
                           reinterpret_cast<uintptr_t>(&host_state))},
          b.Call(*write_host, reinterpret_cast<uintptr_t>(&host_state)));
  attempt({absl::StrFormat("read the host heap at %p (a pointer the host "
                           "passed by mistake: refused before the call)",
                           static_cast<void*>(secret.get())),
           absl::StatusCode::kInvalidArgument,
           absl::StrFormat("0x%x) points into the host heap",
                           reinterpret_cast<uintptr_t>(secret.get()))},
          b.Call(*read_heap, static_cast<const unsigned char*>(secret.get())));
  {
    // Not a fault: fopen fails as it would without the file.
    const absl::StatusOr<mpkbox::Tainted<long>> r = b.Call(*open_file);
    const bool ok = r.ok() && r->UnverifiedValue("printed") == -ENOENT;
    stopped += ok;
    std::printf("    fopen(\"/etc/passwd\"), a file the policy does not "
                "grant:\n      %s %s\n",
                ok ? "STOPPED:" : "NOT STOPPED AS EXPECTED:",
                ok ? "fopen returned NULL with errno ENOENT"
                : r.ok()
                    ? absl::StrCat("returned ", r->UnverifiedValue("printed"))
                          .c_str()
                    : Describe(r.status(), b).c_str());
    Expect(ok, "fopen(\"/etc/passwd\"): expected NULL with ENOENT");
  }
  attempt({"find the WRPKRU in libc's pkey_set and jump to it with EAX = 0",
           absl::StatusCode::kAborted, "pkey_set"},
          b.Call(*jump));

  const bool intact =
      host_state == 0 && std::memcmp(secret.get(), "host password", 13) == 0;
  std::printf(
      "    %d of 4 attempts stopped; host_state is %ld, the heap secret %s\n",
      stopped, host_state, intact ? "intact" : "CHANGED");
  Expect(intact, "host memory should be unchanged");
  return *std::move(box);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 2) {
    std::fprintf(stderr, "usage: %s [PLUGIN_DIR]\n", argv[0]);
    return 1;
  }
  const std::string dir = argc == 2 ? argv[1] : PLUGIN_DIR;
  if (!mpkbox::Runtime::IsSupported()) {
    std::printf("plugin_host: no PKU on this machine: skipped\n");
    return 2;
  }
  std::printf("plugin_host: three plugins from %s, one compartment each\n",
              dir.c_str());
  // Kept until the end: three compartments, three keys.
  std::unique_ptr<mpkbox::Compartment> plugins[] = {
      RunWordCount(dir), RunConfigReader(dir), RunEscape(dir)};
  if (failures != 0) {
    std::printf("plugin_host: %d expectation(s) FAILED\n", failures);
    return 1;
  }
  std::printf(
      "plugin_host: word_count ran, config_reader's crash was "
      "contained and it recovered, escape was stopped 4 times (keys "
      "%d, %d, %d); every outcome as expected\n",
      plugins[0]->pkey(), plugins[1]->pkey(), plugins[2]->pkey());
  return 0;
}
