/* word_count: the well-behaved plugin. It counts the words and lines of a
   text and reports each figure through host_report, a host function it
   imports (the host Exposes it before loading the plugin). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Provided by the host (plugin_host.cc), called through mpkbox's callback
   gate with host rights. */
void host_report(const char* what, long value);

/* Returns the number of words. */
long plugin_run(const char* text, size_t size) {
  long words = 0, lines = 0, longest = 0, run = 0;
  for (size_t i = 0; i < size; ++i) {
    const char c = text[i];
    const int letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (letter) {
      if (run++ == 0) ++words;
      if (run > longest) longest = run;
    } else {
      run = 0;
    }
    if (c == '\n') ++lines;
  }
  /* Its own heap: the names it reports live in compartment memory. */
  char* name = malloc(16);
  if (name == NULL) return -1;
  strcpy(name, "words");
  host_report(name, words);
  strcpy(name, "lines");
  host_report(name, lines);
  strcpy(name, "longest word");
  host_report(name, longest);
  free(name);
  return words;
}
