// threadpool.h - persistent worker threads for the core.
//
// Workers are created once and sleep between jobs; run() wakes them, gives each
// thread its index, and returns when every thread has finished. Work is split by
// rows: a kernel running on thread ith of nth takes rows [ith*n/nth, (ith+1)*n/nth).
#pragma once
#include <cstdint>
#include <functional>
#include <mutex>

namespace ll {

class ThreadPool {
 public:
  // n_threads counts the calling thread: a pool of 2 has one extra worker.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Run fn(ith, nth) on every thread (the caller is thread 0) and wait for all.
  // Not re-entrant: one job at a time per pool.
  void run(const std::function<void(int ith, int nth)>& fn);

  // Called from inside run() by every thread: returns once all threads reached it.
  void barrier();

  // Run fn(chunk) for every chunk in [0, n_chunks); the chunks are claimed one
  // at a time by whichever threads are running, and the call returns when all
  // are done. A worker that has not started by the time the chunks run out is
  // not waited for, so a descheduled worker (busy machine) cannot stall the
  // caller. fn must not call barrier().
  void run_chunks(int64_t n_chunks, const std::function<void(int64_t chunk)>& fn);

 private:
  struct State;
  State* state_;
  int n_threads_;
};

// Number of physical cores (not SMT siblings); at least 1.
int default_thread_count();

// The [begin, end) share of n items that thread ith of nth takes.
inline void split_range(int64_t n, int ith, int nth, int64_t* begin, int64_t* end) {
  *begin = n * ith / nth;
  *end = n * (ith + 1) / nth;
}

// A process-wide pool of n_threads for calls made outside a model (the binding-level
// matmul, the benchmark module); rebuilt when the size changes. Hold the lock that
// shared_pool_lock() returns while getting and using it.
std::unique_lock<std::mutex> shared_pool_lock();
ThreadPool& shared_pool(int n_threads);

}  // namespace ll
