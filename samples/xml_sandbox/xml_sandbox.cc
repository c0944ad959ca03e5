// xml_sandbox: untrusted XML documents, one compartment request each
// (SandboxedXml), including hostile ones: every outcome is a value or a
// status, and the program goes on. Exit code 0 when every request ended as
// expected, 1 otherwise, 2 without PKU. What libxml2 itself prints (its
// error messages, on its stderr) reaches the host's stderr through the
// compartment's stdio sink, each line prefixed with "[xml]!".
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "sandboxed_xml.h"

namespace {

struct Request {
  const char* what;
  std::string xml;
  const char* xpath;
  absl::StatusCode expected;
  const char* expected_value;  // for kOk
};

std::string Catalog(int items) {
  std::string s = "<?xml version='1.0'?><catalog>";
  for (int i = 0; i < items; ++i) {
    absl::StrAppend(&s, "<item id='", i, "' price='", i % 7 + 1,
                    "'><name>part ", i, "</name></item>");
  }
  return s + "</catalog>";
}

// Entities that expand to 10^9 copies: libxml2's amplification limit.
std::string BillionLaughs() {
  std::string s = "<?xml version='1.0'?><!DOCTYPE l [<!ENTITY a0 'ha'>";
  for (int i = 1; i < 10; ++i) {
    absl::StrAppend(&s, "<!ENTITY a", i, " '");
    for (int j = 0; j < 10; ++j) absl::StrAppend(&s, "&a", i - 1, ";");
    s += "'>";
  }
  return s + "]><l>&a9;</l>";
}

std::string DeepNesting(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "<d>";
  for (int i = 0; i < depth; ++i) s += "</d>";
  return s;
}

}  // namespace

int main() {
  // Line by line, so the results interleave with libxml2's messages.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  absl::StatusOr<SandboxedXml> xml = SandboxedXml::Create(size_t{16} << 20);
  if (!xml.ok()) {
    std::fprintf(stderr, "xml_sandbox: %s\n", xml.status().ToString().c_str());
    return xml.status().code() == absl::StatusCode::kFailedPrecondition ? 2
                                                                        : 1;
  }
  const std::vector<Request> requests = {
      {"a catalog: how many items", Catalog(100), "count(//item)",
       absl::StatusCode::kOk, "100"},
      {"a catalog: the name of item 42", Catalog(100),
       "string(//item[@id='42']/name)", absl::StatusCode::kOk, "part 42"},
      {"a catalog: the sum of prices", Catalog(100), "sum(//item/@price)",
       absl::StatusCode::kOk, "395"},
      {"malformed XML", "<a><b></a>", "count(//b)",
       absl::StatusCode::kInvalidArgument, nullptr},
      {"a bad XPath expression", Catalog(3), "count(//item[",
       absl::StatusCode::kInvalidArgument, nullptr},
      {"a billion laughs (entity expansion)", BillionLaughs(), "string(/l)",
       absl::StatusCode::kInvalidArgument, nullptr},
      {"100,000 nested elements", DeepNesting(100000), "count(//d)",
       absl::StatusCode::kInvalidArgument, nullptr},
      {"a 6 MiB document in a 16 MiB heap", Catalog(100000),
       "count(//item)", absl::StatusCode::kResourceExhausted, nullptr},
      {"the catalog again, after all that", Catalog(10), "count(//item)",
       absl::StatusCode::kOk, "10"},
  };
  int unexpected = 0;
  for (const Request& r : requests) {
    absl::StatusOr<std::string> v = xml->Evaluate(r.xml, r.xpath);
    const bool as_expected =
        v.status().code() == r.expected &&
        (!v.ok() || r.expected_value == nullptr || *v == r.expected_value);
    if (!as_expected) ++unexpected;
    std::printf("%-40s %s %s\n", r.what,
                v.ok() ? absl::StrCat("= '", *v, "'").c_str()
                       : v.status().ToString().c_str(),
                as_expected ? "(as expected)" : "(UNEXPECTED)");
  }
  std::printf("xml_sandbox: %zu requests, %d unexpected\n", requests.size(),
              unexpected);
  return unexpected == 0 ? 0 : 1;
}
