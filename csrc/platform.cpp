// platform.cpp - the operating-system services of platform.h, per OS family.
#include "platform.h"

#include <cstdint>
#include <cstdlib>
#include <thread>

#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <malloc.h>
#include <windows.h>

#include <vector>
#else
#include <sys/mman.h>
#include <unistd.h>
#endif

#if LL_LINUX
#include <sched.h>

#include <fstream>
#include <set>
#include <string>
#endif

#if defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#endif

namespace ll {

namespace {
int hardware_threads() {
  const int n = (int)std::thread::hardware_concurrency();
  return n < 1 ? 1 : n;
}
}  // namespace

#if defined(_WIN32)

size_t page_size() {
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  return si.dwPageSize;
}

void* map_anonymous(size_t bytes) {
  // Committed pages read as zero; Windows has no populate flag (pages fault in on
  // first touch).
  return VirtualAlloc(nullptr, bytes, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
}

void unmap_anonymous(void* p, size_t bytes) {
  if (p) VirtualFree(p, 0, MEM_RELEASE);
}

void release_pages(const void* p, size_t bytes) {
  // VirtualUnlock on pages that are not locked takes them out of the working set
  // (and fails with ERROR_NOT_LOCKED, which is the expected answer here).
  const uintptr_t page = page_size();
  const uintptr_t a = ((uintptr_t)p + page - 1) / page * page, b = ((uintptr_t)p + bytes) / page * page;
  if (b > a) VirtualUnlock((void*)a, b - a);
}

void* aligned_malloc(size_t align, size_t bytes) { return _aligned_malloc(bytes, align); }
void aligned_free(void* p) { _aligned_free(p); }

int physical_core_count() {
  // One RelationProcessorCore record per core, with the logical processors it
  // holds (per processor group); count the cores that share a processor with the
  // process affinity mask. That mask is nonzero only while the process runs in
  // one group, the group of the calling thread; otherwise every core counts.
  DWORD_PTR process_mask = 0, system_mask = 0;
  const bool have_mask =
      GetProcessAffinityMask(GetCurrentProcess(), &process_mask, &system_mask) != 0 && process_mask != 0;
  PROCESSOR_NUMBER here = {};
  GetCurrentProcessorNumberEx(&here);
  DWORD len = 0;
  GetLogicalProcessorInformationEx(RelationProcessorCore, nullptr, &len);
  std::vector<char> buf(len);
  int n = 0;
  if (len > 0 &&
      GetLogicalProcessorInformationEx(RelationProcessorCore,
                                       reinterpret_cast<SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX*>(buf.data()), &len)) {
    for (DWORD off = 0; off < len;) {
      const auto* info = reinterpret_cast<const SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX*>(buf.data() + off);
      if (info->Size == 0) break;
      if (info->Relationship == RelationProcessorCore) {
        bool allowed = !have_mask;
        for (WORD g = 0; g < info->Processor.GroupCount && !allowed; g++) {
          const GROUP_AFFINITY& ga = info->Processor.GroupMask[g];
          allowed = ga.Group == here.Group && (ga.Mask & process_mask) != 0;
        }
        if (allowed) n++;
      }
      off += info->Size;
    }
  }
  return n > 0 ? n : hardware_threads();
}

#else  // POSIX

size_t page_size() {
  static const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  return page;
}

void* map_anonymous(size_t bytes) {
  int flags = MAP_PRIVATE | MAP_ANON;
#if LL_LINUX && defined(MAP_POPULATE)
  flags |= MAP_POPULATE;
#endif
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void unmap_anonymous(void* p, size_t bytes) {
  if (p) munmap(p, bytes);
}

void release_pages(const void* p, size_t bytes) {
#if defined(MADV_DONTNEED)
  const uintptr_t page = page_size();
  const uintptr_t a = ((uintptr_t)p + page - 1) / page * page, b = ((uintptr_t)p + bytes) / page * page;
  if (b > a) madvise((void*)a, b - a, MADV_DONTNEED);
#endif
}

void* aligned_malloc(size_t align, size_t bytes) {
  void* p = nullptr;
  return posix_memalign(&p, align, bytes) == 0 ? p : nullptr;
}

void aligned_free(void* p) { std::free(p); }

#if LL_LINUX
int physical_core_count() {
  // Count distinct (package, core) pairs among the CPUs this process may use.
  cpu_set_t set;
  CPU_ZERO(&set);
  std::set<std::string> cores;
  int n_allowed = 0;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
      if (!CPU_ISSET(cpu, &set)) continue;
      n_allowed++;
      std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
      std::ifstream core(base + "core_id"), pkg(base + "physical_package_id");
      std::string c, p;
      if (core >> c && pkg >> p) cores.insert(p + ":" + c);
      else cores.insert("cpu" + std::to_string(cpu));
    }
  }
  int n = (int)cores.size();
  if (n < 1) n = n_allowed;
  return n < 1 ? hardware_threads() : n;
}
#elif defined(__APPLE__)
int physical_core_count() {
  // The performance cores first: a thread on an efficiency core finishes its rows
  // last and the step waits for it.
  for (const char* name : {"hw.perflevel0.physicalcpu", "hw.physicalcpu"}) {
    int n = 0;
    size_t len = sizeof(n);
    if (sysctlbyname(name, &n, &len, nullptr, 0) == 0 && n > 0) return n;
  }
  return hardware_threads();
}
#else
int physical_core_count() { return hardware_threads(); }
#endif

#endif  // POSIX

}  // namespace ll
