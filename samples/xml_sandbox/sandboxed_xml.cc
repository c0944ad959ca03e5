#include "sandboxed_xml.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace {

template <typename Fn>
absl::Status Find(mpkbox::Compartment& box, const char* name, Fn** out) {
  absl::StatusOr<Fn*> fn = box.Lookup<Fn>(name);
  if (!fn.ok()) return fn.status();
  *out = *fn;
  return absl::OkStatus();
}

// A copy of `bytes` in compartment memory, NUL-terminated.
absl::StatusOr<char*> CopyIn(mpkbox::Compartment& box,
                             absl::string_view bytes) {
  absl::StatusOr<void*> p = box.Allocate(bytes.size() + 1);
  if (!p.ok()) return p.status();
  char* s = static_cast<char*>(*p);
  std::memcpy(s, bytes.data(), bytes.size());
  s[bytes.size()] = '\0';
  return s;
}

// The NUL-terminated string a compartment function returned, copied out
// only if every byte up to its end lies in the compartment's memory.
absl::StatusOr<std::string> CopyOut(mpkbox::Compartment& box,
                                    const mpkbox::Tainted<xmlChar*>& result) {
  return result.Verify([&](xmlChar* p) -> absl::StatusOr<std::string> {
    if (p == nullptr) {
      return absl::ResourceExhaustedError("libxml2 could not make the result");
    }
    const char* s = reinterpret_cast<const char*>(p);
    size_t n = 0;
    // Page by page: a lying pointer is refused, never followed into host
    // memory.
    while (true) {
      if (n >= SandboxedXml::kMaxResultBytes) {
        return absl::OutOfRangeError("the result is longer than 1 MiB");
      }
      if (n % 4096 == 0 && !box.Contains(s + n, 1)) {
        return absl::InternalError(
            "libxml2 returned a string outside its compartment");
      }
      if (s[n] == '\0') break;
      ++n;
    }
    return std::string(s, n);
  });
}

}  // namespace

absl::StatusOr<SandboxedXml> SandboxedXml::Create(size_t heap_limit_bytes) {
  absl::StatusOr<std::unique_ptr<mpkbox::Compartment>> box =
      mpkbox::Compartment::Create(
          {.name = "xml", .heap_limit_bytes = heap_limit_bytes});
  if (!box.ok()) return box.status();
  mpkbox::Compartment& b = **box;
  if (absl::Status s = b.Load("libxml2.so.2"); !s.ok()) return s;
  Functions fns;
  for (absl::Status s :
       {Find(b, "xmlReadMemory", &fns.read_memory),
        Find(b, "xmlXPathNewContext", &fns.new_context),
        Find(b, "xmlXPathEvalExpression", &fns.eval),
        Find(b, "xmlXPathCastToString", &fns.to_string)}) {
    if (!s.ok()) return s;
  }
  return SandboxedXml(*std::move(box), fns);
}

absl::StatusOr<std::string> SandboxedXml::Evaluate(absl::string_view xml,
                                                   absl::string_view xpath) {
  absl::StatusOr<std::string> result = EvaluateInside(xml, xpath);
  // Whatever happened, the next request starts from a fresh compartment:
  // the document's memory goes, and a fault's refusal is lifted.
  if (absl::Status s = box_->Reset(); !s.ok() && result.ok()) return s;
  return result;
}

absl::StatusOr<std::string> SandboxedXml::EvaluateInside(
    absl::string_view xml, absl::string_view xpath) {
  if (xml.size() > size_t{INT32_MAX}) {
    return absl::InvalidArgumentError("the document is larger than 2 GiB");
  }
  mpkbox::Compartment& box = *box_;
  absl::StatusOr<char*> doc_bytes = CopyIn(box, xml);
  if (!doc_bytes.ok()) return doc_bytes.status();
  absl::StatusOr<char*> expr = CopyIn(box, xpath);
  if (!expr.ok()) return expr.status();
  // No network, no error printing: the status says what went wrong.
  const int options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
  auto doc = box.Call(fns_.read_memory, *doc_bytes,
                      static_cast<int>(xml.size()), "request.xml", nullptr,
                      options);
  if (!doc.ok()) return doc.status();
  // Pointers from the compartment only go back into it: libxml2 checks
  // nothing, but a lie can only mislead libxml2 itself.
  xmlDocPtr d = doc->UnverifiedValue("passed back to the compartment only");
  if (d == nullptr) {
    const mpkbox::CompartmentStats stats = box.stats();
    if (stats.failed_allocations != 0) {
      return absl::ResourceExhaustedError(
          "the document needs more memory than the compartment's heap limit");
    }
    return absl::InvalidArgumentError(
        "not a well-formed XML document (or one libxml2's limits refuse)");
  }
  auto ctx = box.Call(fns_.new_context, d);
  if (!ctx.ok()) return ctx.status();
  auto value = box.Call(fns_.eval,
                        reinterpret_cast<const xmlChar*>(*expr),
                        ctx->UnverifiedValue("passed back to the compartment"));
  if (!value.ok()) return value.status();
  xmlXPathObjectPtr v = value->UnverifiedValue("passed back to the compartment");
  if (v == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", xpath, "' is not a valid XPath expression"));
  }
  auto text = box.Call(fns_.to_string, v);
  if (!text.ok()) return text.status();
  return CopyOut(box, *text);
}
