/* loader_features_test.cc: dl_iterate_phdr from loaded code lists the
   compartment's objects (ld.so's would list the host's). */
#define _GNU_SOURCE
#include <link.h>

struct Walk {
  int objects;
  int found;  /* the object holding this function */
  unsigned long base;
};

static int Visit(struct dl_phdr_info* info, size_t size, void* data) {
  struct Walk* w = data;
  (void)size;
  ++w->objects;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
    unsigned long start = info->dlpi_addr + ph->p_vaddr;
    unsigned long self = (unsigned long)&Visit;
    if (ph->p_type == PT_LOAD && self >= start && self < start + ph->p_memsz) {
      w->found = 1;
      w->base = info->dlpi_addr;
    }
  }
  return 0;
}

/* How many objects dl_iterate_phdr lists; *base: the load bias of the
   one holding this code (0 if none). */
int phdr_count_objects(unsigned long* base) {
  struct Walk w = {0, 0, 0};
  dl_iterate_phdr(Visit, &w);
  *base = w.found ? w.base : 0;
  return w.objects;
}
