/* config_reader: the buggy plugin. It counts the "key=value" lines of a
   config text, and assumes every line has an '=': a line without one makes
   it write through the null pointer strchr returned. */
#include <stddef.h>
#include <string.h>

/* Returns the number of settings. `text` is NUL-terminated and writable
   (compartment memory the host filled). */
long plugin_run(char* text) {
  long settings = 0;
  for (char* line = text; *line != '\0';) {
    char* end = strchr(line, '\n');
    if (end != NULL) *end = '\0';
    if (*line != '\0' && *line != '#') {
      char* eq = strchr(line, '='); /* BUG: NULL when there is no '=' */
      *eq = '\0';
      ++settings;
    }
    if (end == NULL) break;
    line = end + 1;
  }
  return settings;
}
