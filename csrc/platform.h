// platform.h - the operating-system services the core uses, one function each.
//
// platform.cpp has one version of each per OS family: Linux, other POSIX systems
// (macOS, the BSDs) and Windows. Everything else in csrc/ is portable C++17 plus
// the GCC/Clang extensions the kernels use. Building with LL_PORTABLE_POSIX=1 on
// Linux takes the other-POSIX versions (and the thread pool's condition-variable
// wait instead of the futex), so the tests can run that path on Linux.
#pragma once
#include <cstddef>

#if defined(__linux__) && !LL_PORTABLE_POSIX
#define LL_LINUX 1
#else
#define LL_LINUX 0
#endif

namespace ll {

// Bytes per virtual-memory page.
size_t page_size();

// `bytes` of zeroed read-write anonymous memory, committed up front where the OS
// offers it (Linux MAP_POPULATE: one call instead of a fault per page); nullptr
// when the OS refuses. Give it back with unmap_anonymous(p, bytes).
void* map_anonymous(size_t bytes);
void unmap_anonymous(void* p, size_t bytes);

// A hint that the whole pages inside [p, p + bytes) of a read-only file mapping
// will not be read again: the OS may drop them from this process's memory (they
// are read back from the file if touched after all). Does nothing where the OS
// has no such hint.
void release_pages(const void* p, size_t bytes);

// `bytes` aligned to `align` (a power of two); nullptr on failure. Free with
// aligned_free (Windows frees aligned blocks with a function of their own).
void* aligned_malloc(size_t align, size_t bytes);
void aligned_free(void* p);

// Physical cores (SMT siblings counted once) this process may run on; at least 1.
// Linux: the affinity mask and sysfs topology; Windows: the processor cores in the
// process affinity mask; macOS: the performance cores (hw.perflevel0.physicalcpu,
// else hw.physicalcpu); elsewhere std::thread::hardware_concurrency.
int physical_core_count();

}  // namespace ll
