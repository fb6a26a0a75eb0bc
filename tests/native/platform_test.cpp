// platform_test.cpp - checks of csrc/platform.cpp and csrc/threadpool.cpp, built
// and run by tests/test_platform_native.py twice on Linux: as is (futex, affinity,
// MAP_POPULATE) and with -DLL_PORTABLE_POSIX=1 (the condition-variable wait and the
// other-POSIX services that macOS and the BSDs get). Prints one line per check and
// exits 1 on the first failure.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "platform.h"
#include "threadpool.h"

#if LL_LINUX
#include <sched.h>
#endif

namespace {

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAIL %s\n", what.c_str());
    std::exit(1);
  }
}

void test_page_size() {
  const size_t page = ll::page_size();
  check(page >= 1024 && (page & (page - 1)) == 0, "page_size is a power of two >= 1024, got " + std::to_string(page));
  std::printf("ok page_size %zu\n", page);
}

void test_anonymous_and_release() {
  const size_t page = ll::page_size(), bytes = 4 * page + 100;
  uint8_t* p = static_cast<uint8_t*>(ll::map_anonymous(bytes));
  check(p != nullptr, "map_anonymous returned memory");
  check((uintptr_t)p % page == 0, "map_anonymous is page aligned");
  for (size_t i = 0; i < bytes; i++) check(p[i] == 0, "map_anonymous memory reads zero");
  std::memset(p, 0xAB, bytes);
  // The whole pages inside [p + 100, p + 100 + 3 pages) are pages 1 and 2 only.
  ll::release_pages(p + 100, 3 * page);
  for (size_t i = 0; i < bytes; i++) {
    if (i >= page && i < 3 * page) continue;
    check(p[i] == 0xAB, "release_pages leaves the partial pages at both ends alone (byte " + std::to_string(i) + ")");
  }
#if defined(__linux__)
  // Linux drops private anonymous pages on MADV_DONTNEED: they read zero after it,
  // which shows the hint reached exactly the interior pages.
  for (size_t i = page; i < 3 * page; i++) check(p[i] == 0, "release_pages dropped the interior pages");
#endif
  ll::release_pages(p + 1, page - 2);  // no whole page inside: nothing to do
  check(p[page - 1] == 0xAB, "release_pages of less than a page is a no-op");
  ll::unmap_anonymous(p, bytes);
  std::printf("ok map_anonymous / release_pages\n");
}

void test_aligned() {
  for (size_t bytes : {64, 128, 4096, 1 << 20}) {
    void* p = ll::aligned_malloc(64, bytes);
    check(p != nullptr && (uintptr_t)p % 64 == 0, "aligned_malloc(64, " + std::to_string(bytes) + ") is 64-byte aligned");
    std::memset(p, 1, bytes);
    ll::aligned_free(p);
  }
  ll::aligned_free(nullptr);
  std::printf("ok aligned_malloc\n");
}

void test_core_count() {
  const int n = ll::physical_core_count();
  const int hw = (int)std::thread::hardware_concurrency();
  check(n >= 1 && (hw < 1 || n <= hw), "1 <= physical_core_count <= hardware threads, got " + std::to_string(n));
#if LL_LINUX
  // Pinned to one CPU, the process has one core to use.
  cpu_set_t old_set, one;
  check(sched_getaffinity(0, sizeof(old_set), &old_set) == 0, "sched_getaffinity");
  int first = 0;
  while (!CPU_ISSET(first, &old_set)) first++;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  check(sched_setaffinity(0, sizeof(one), &one) == 0, "sched_setaffinity");
  const int pinned = ll::physical_core_count();
  check(sched_setaffinity(0, sizeof(old_set), &old_set) == 0, "sched_setaffinity restore");
  check(pinned == 1, "physical_core_count follows the affinity mask: 1 CPU gave " + std::to_string(pinned));
#endif
  std::printf("ok physical_core_count %d (hardware threads %d)\n", n, hw);
}

// Busy work of about `iters` steps that the compiler cannot drop.
uint64_t spin(uint64_t iters) {
  uint64_t x = 88172645463325252ull;
  for (uint64_t i = 0; i < iters; i++) x ^= x << 13, x ^= x >> 7, x ^= x << 17;
  return x;
}

void test_pool(int nth) {
  ll::ThreadPool pool(nth);
  check(pool.size() == nth, "pool size");
  std::atomic<uint64_t> sink{0};
  for (int job = 0; job < 100; job++) {
    // run(): every thread once, with its own index.
    std::vector<int> seen(nth, 0);
    pool.run([&](int ith, int n) {
      check(n == nth, "run() passes nth");
      seen[ith]++;
      // Now and then thread 0 works longer, so the others go past spinning and
      // yielding into the sleeping wait.
      if (ith == 0 && job % 25 == 0) sink += spin(2000000);
    });
    for (int i = 0; i < nth; i++) check(seen[i] == 1, "run() ran thread " + std::to_string(i) + " once");

    // barrier(): nobody passes phase k before everyone finished phase k.
    std::atomic<int> count{0};
    pool.run([&](int ith, int n) {
      for (int phase = 1; phase <= 3; phase++) {
        count++;
        pool.barrier();
        check(count.load() >= n * phase, "barrier held back a thread");
        pool.barrier();
      }
    });
    check(count.load() == 3 * nth, "barrier phases counted");

    // run_chunks(): every chunk exactly once.
    const int64_t n_chunks = 1 + job % 37;
    std::vector<std::atomic<int>> hits(n_chunks);
    for (auto& h : hits) h = 0;
    pool.run_chunks(n_chunks, [&](int64_t c) { hits[c]++; });
    for (int64_t c = 0; c < n_chunks; c++) check(hits[c].load() == 1, "run_chunks ran every chunk once");
  }
  // A worker's exception reaches the caller, and the pool keeps working.
  bool caught = false;
  try {
    pool.run([&](int ith, int) {
      if (ith == nth - 1) throw std::runtime_error("boom");
    });
  } catch (const std::runtime_error& e) {
    caught = std::string(e.what()) == "boom";
  }
  check(caught, "run() rethrows a thread's exception");
  caught = false;
  try {
    pool.run_chunks(8, [&](int64_t c) {
      if (c == 5) throw std::runtime_error("chunk");
    });
  } catch (const std::runtime_error& e) {
    caught = std::string(e.what()) == "chunk";
  }
  check(caught, "run_chunks() rethrows a chunk's exception");
  std::atomic<int> after{0};
  pool.run([&](int, int) { after++; });
  check(after.load() == nth, "the pool runs jobs after an exception");
  std::printf("ok thread pool of %d\n", nth);
}

}  // namespace

int main() {
  std::printf("platform: %s\n", LL_LINUX ? "linux" : "portable posix");
  test_page_size();
  test_anonymous_and_release();
  test_aligned();
  test_core_count();
  for (int nth : {1, 2, 3, 8}) test_pool(nth);
  check(ll::default_thread_count() >= 1, "default_thread_count >= 1");
  std::printf("all passed\n");
  return 0;
}
