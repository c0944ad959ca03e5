// SandboxedXml: XPath over untrusted XML with Debian's libxml2, run in a
// compartment. One request at a time, each on a fresh compartment:
//
//   absl::StatusOr<SandboxedXml> xml = SandboxedXml::Create();
//   absl::StatusOr<std::string> title =
//       xml->Evaluate(untrusted_bytes, "string(/book/title)");
//
// The program links no libxml2: Compartment::Load brings libxml2.so.2 and
// its dependencies (ICU, liblzma, libz) into the compartment, unmodified.
// The document and the expression are copied into compartment memory; the
// result string is found, bounds-checked and copied out by the host. After
// each request the compartment is Reset (a few microseconds), so nothing a
// hostile document left behind (heap contents, a corrupted parser state)
// reaches the next request. A crash or a heap limit inside becomes a status.
// Not thread-safe: one SandboxedXml per thread.
#ifndef MPKBOX_SAMPLES_XML_SANDBOX_SANDBOXED_XML_H_
#define MPKBOX_SAMPLES_XML_SANDBOX_SANDBOXED_XML_H_

#include <libxml/parser.h>
#include <libxml/xpath.h>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mpkbox/mpkbox.h"

class SandboxedXml {
 public:
  // The longest result Evaluate copies out.
  static constexpr size_t kMaxResultBytes = size_t{1} << 20;

  // heap_limit_bytes bounds what one document may make libxml2 allocate.
  static absl::StatusOr<SandboxedXml> Create(
      size_t heap_limit_bytes = size_t{64} << 20);

  SandboxedXml(SandboxedXml&&) = default;
  SandboxedXml& operator=(SandboxedXml&&) = default;

  // The value of `xpath` on `xml`, as XPath's string() gives it.
  // kInvalidArgument: not well-formed XML (or refused by libxml2's limits:
  // entity loops, depth), or not a valid expression. kResourceExhausted:
  // the document needs more than the heap limit. kAborted: libxml2 crashed
  // (the compartment is reset; later calls work).
  absl::StatusOr<std::string> Evaluate(absl::string_view xml,
                                       absl::string_view xpath);

  mpkbox::Compartment& compartment() { return *box_; }

 private:
  // libxml2's functions as the compartment's copy of the library has them
  // (valid across Reset: the same addresses).
  struct Functions {
    decltype(&::xmlReadMemory) read_memory = nullptr;
    decltype(&::xmlXPathNewContext) new_context = nullptr;
    decltype(&::xmlXPathEvalExpression) eval = nullptr;
    decltype(&::xmlXPathCastToString) to_string = nullptr;
  };
  SandboxedXml(std::unique_ptr<mpkbox::Compartment> box, Functions fns)
      : box_(std::move(box)), fns_(fns) {}

  absl::StatusOr<std::string> EvaluateInside(absl::string_view xml,
                                             absl::string_view xpath);

  std::unique_ptr<mpkbox::Compartment> box_;
  Functions fns_;
};

#endif  // MPKBOX_SAMPLES_XML_SANDBOX_SANDBOXED_XML_H_
