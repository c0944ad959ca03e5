// The compartment's loaded objects, as the loader publishes them, copied
// into each thread's HeapCache so that loaded code's _dl_find_object and
// dl_iterate_phdr (runtime/compartment_libc/loaded_objects.cc) answer with
// its own objects without leaving the compartment. ld.so knows none of
// them: its answers would name the host's objects.
#include <string.h>

#include <algorithm>
#include <mutex>

#include "allocator/compartment_heap.h"
#include "allocator/magazines.h"

namespace mpkbox::internal {

void CompartmentHeap::SetLoadedObjects(
    const std::vector<LoadedObjectInfo>& objects) {
  std::lock_guard<std::mutex> lock(mu_);
  loaded_objects_.assign(
      objects.begin(),
      objects.begin() + std::min(objects.size(), kMaxLoadedObjects));
  for (HeapThread* t : threads_) CopyLoadedObjects(t->cache);
}

void CompartmentHeap::CopyLoadedObjects(HeapCache* cache) {
  memcpy(cache->objects, loaded_objects_.data(),
         loaded_objects_.size() * sizeof(LoadedObjectInfo));
  cache->num_objects = loaded_objects_.size();
}

}  // namespace mpkbox::internal
