// threadpool.cpp - persistent workers: spin briefly for the next job, then
// sleep on a condition variable; a spinning barrier for use inside a job.
#include "threadpool.h"

#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LL_PAUSE() _mm_pause()
#else
#define LL_PAUSE() std::this_thread::yield()
#endif

namespace ll {

namespace {
constexpr int kSpinIters = 20000;  // ~ tens of microseconds of pause before sleeping
}

struct PoolState {
  std::vector<std::thread> workers;
  // Job id: 2 * job counter + kind (0: run(), every thread; 1: run_chunks()).
  std::atomic<uint64_t> generation{0};
  uint64_t job_counter = 0;  // caller only
  std::atomic<int> n_done{0};           // workers finished with the current job
  std::atomic<int> n_sleeping{0};
  std::atomic<bool> stop{false};
  const std::function<void(int, int)>* job = nullptr;
  std::mutex mu;
  std::condition_variable cv;
  std::exception_ptr error;  // first exception thrown by a worker
  std::mutex error_mu;
  // run_chunks(): chunks are claimed from next_chunk. join holds
  // (job counter << 32) | kClosed | number of workers that joined; a worker may
  // join only while its job's entry is open, so the caller never waits for a
  // worker that had not started when the work ran out.
  const std::function<void(int64_t)>* chunk_job = nullptr;
  int64_t n_chunks = 0;
  std::atomic<int64_t> next_chunk{0};
  std::atomic<uint64_t> join{0};
  // barrier
  std::atomic<int> barrier_count{0};
  std::atomic<uint64_t> barrier_phase{0};
};

struct ThreadPool::State : PoolState {};

namespace {

void store_error(PoolState* s) {
  std::lock_guard<std::mutex> lock(s->error_mu);
  if (!s->error) s->error = std::current_exception();
}

void run_job(PoolState* s, int ith, int nth) {
  try {
    (*s->job)(ith, nth);
  } catch (...) {
    store_error(s);
  }
}

constexpr uint64_t kClosed = 1u << 31;

void run_chunk_loop(PoolState* s) {
  for (;;) {
    const int64_t c = s->next_chunk.fetch_add(1, std::memory_order_relaxed);
    if (c >= s->n_chunks) return;
    try {
      (*s->chunk_job)(c);
    } catch (...) {
      store_error(s);
    }
  }
}

// Join chunked job `gen` if it is still open; true when joined.
bool try_join(PoolState* s, uint64_t gen) {
  const uint64_t want = ((gen >> 1) & 0xffffffffu) << 32;
  uint64_t v = s->join.load(std::memory_order_acquire);
  while ((v & ~(uint64_t)0xffffffffu) == want && !(v & kClosed)) {
    if (s->join.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) return true;
  }
  return false;
}

void worker_loop(PoolState* s, int ith, int nth) {
  uint64_t seen = 0;
  for (;;) {
    // Spin first: consecutive jobs of a forward pass arrive microseconds apart.
    int spins = 0;
    while (s->generation.load(std::memory_order_acquire) == seen && spins < kSpinIters) {
      LL_PAUSE();
      spins++;
    }
    if (s->generation.load(std::memory_order_acquire) == seen) {
      s->n_sleeping.fetch_add(1);
      std::unique_lock<std::mutex> lock(s->mu);
      s->cv.wait(lock, [&] { return s->generation.load() != seen; });
      s->n_sleeping.fetch_sub(1);
    }
    seen = s->generation.load(std::memory_order_acquire);
    if (s->stop.load()) return;
    if ((seen & 1) == 0) {
      run_job(s, ith, nth);
      s->n_done.fetch_add(1, std::memory_order_acq_rel);
    } else if (try_join(s, seen)) {
      run_chunk_loop(s);
      s->n_done.fetch_add(1, std::memory_order_acq_rel);
    }
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : state_(new State), n_threads_(n_threads < 1 ? 1 : n_threads) {
  for (int i = 1; i < n_threads_; i++) state_->workers.emplace_back(worker_loop, state_, i, n_threads_);
}

ThreadPool::~ThreadPool() {
  state_->stop.store(true);
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->generation.store(2 * ++state_->job_counter);
  }
  state_->cv.notify_all();
  for (std::thread& t : state_->workers) t.join();
  delete state_;
}

void ThreadPool::run(const std::function<void(int ith, int nth)>& fn) {
  State* s = state_;
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  s->job = &fn;
  s->error = nullptr;
  s->n_done.store(0, std::memory_order_relaxed);
  s->generation.store(2 * ++s->job_counter);  // seq_cst: pairs with the n_sleeping check in workers
  if (s->n_sleeping.load() > 0) {
    std::lock_guard<std::mutex> lock(s->mu);
    s->cv.notify_all();
  }
  run_job(s, 0, n_threads_);
  int spins = 0;
  while (s->n_done.load(std::memory_order_acquire) != n_threads_ - 1) {
    if (++spins < kSpinIters) LL_PAUSE();
    else std::this_thread::yield();
  }
  s->job = nullptr;
  if (s->error) std::rethrow_exception(s->error);
}

void ThreadPool::run_chunks(int64_t n_chunks, const std::function<void(int64_t chunk)>& fn) {
  State* s = state_;
  if (n_chunks <= 0) return;
  if (n_threads_ == 1 || n_chunks == 1) {
    for (int64_t c = 0; c < n_chunks; c++) fn(c);
    return;
  }
  s->chunk_job = &fn;
  s->n_chunks = n_chunks;
  s->next_chunk.store(0, std::memory_order_relaxed);
  s->error = nullptr;
  s->n_done.store(0, std::memory_order_relaxed);
  const uint64_t counter = ++s->job_counter;
  s->join.store((counter & 0xffffffffu) << 32, std::memory_order_relaxed);
  s->generation.store(2 * counter + 1);  // seq_cst: publishes the fields above
  if (s->n_sleeping.load() > 0) {
    std::lock_guard<std::mutex> lock(s->mu);
    s->cv.notify_all();
  }
  run_chunk_loop(s);
  // Close the job: workers that have not joined by now never will.
  const uint64_t v = s->join.fetch_or(kClosed, std::memory_order_acq_rel);
  const int joined = (int)(v & 0x7fffffffu);
  int spins = 0;
  while (s->n_done.load(std::memory_order_acquire) != joined) {
    if (++spins < kSpinIters) LL_PAUSE();
    else std::this_thread::yield();
  }
  s->chunk_job = nullptr;
  if (s->error) std::rethrow_exception(s->error);
}

void ThreadPool::barrier() {
  State* s = state_;
  if (n_threads_ == 1) return;
  const uint64_t phase = s->barrier_phase.load(std::memory_order_acquire);
  if (s->barrier_count.fetch_add(1, std::memory_order_acq_rel) == n_threads_ - 1) {
    s->barrier_count.store(0, std::memory_order_relaxed);
    s->barrier_phase.fetch_add(1, std::memory_order_acq_rel);
    return;
  }
  int spins = 0;
  while (s->barrier_phase.load(std::memory_order_acquire) == phase) {
    if (++spins < kSpinIters) LL_PAUSE();
    else std::this_thread::yield();
  }
}

static int count_physical_cores() {
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
  if (n < 1) n = (int)std::thread::hardware_concurrency();
  return n < 1 ? 1 : n;
}

int default_thread_count() {
  static const int n = count_physical_cores();  // sysfs is read once
  return n;
}

}  // namespace ll
