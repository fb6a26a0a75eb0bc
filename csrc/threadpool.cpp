// threadpool.cpp - persistent workers; every wait spins briefly, then yields,
// then sleeps on a futex (Linux) or a condition variable (elsewhere; see wait_until).
#include "threadpool.h"

#include <atomic>
#include <chrono>
#include <climits>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "platform.h"

#if LL_LINUX
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#define LL_HAVE_FUTEX 1
#else
#include <condition_variable>
#define LL_HAVE_FUTEX 0
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LL_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define LL_PAUSE() __asm__ __volatile__("yield" ::: "memory")
#else
#define LL_PAUSE() std::this_thread::yield()
#endif

namespace ll {

namespace {
// Waiting policy (every wait in the pool: workers for the next job, the caller
// for the workers, threads at a barrier): spin with pause for kSpinNs (jobs of a
// forward pass arrive microseconds apart), then yield until kYieldNs (a busy
// machine gets the core back, a quiet one loses nothing), then sleep on a futex
// (off Linux: a condition variable, woken or timed out after 1 ms). Sleeping
// matters on a contended machine: a thread that waits for a descheduled peer
// gives its core up, so the kernel can run the peer there instead of letting the
// wait last a whole time slice.
constexpr int64_t kSpinNs = 30000;
constexpr int64_t kYieldNs = 300000;

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A 32-bit word that threads can wait on until it differs from a value.
struct WaitWord {
  std::atomic<uint32_t> v{0};
  std::atomic<int> sleepers{0};
#if !LL_HAVE_FUTEX
  std::mutex mu;
  std::condition_variable cv;
#endif
};

// Wake every thread sleeping on w (call after changing w.v; seq_cst pairs with
// the sleepers increment in wait_while).
inline void wake_all(WaitWord& w) {
  if (w.sleepers.load() == 0) return;
#if LL_HAVE_FUTEX
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&w.v), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
  std::lock_guard<std::mutex> lock(w.mu);
  w.cv.notify_all();
#endif
}

// Block until done() is true; done() may only become true after w.v changes
// (the changer calls wake_all(w) afterwards).
template <class Done>
void wait_until(WaitWord& w, Done done) {
  if (done()) return;
  int64_t t0 = 0;
  for (int i = 0;; i++) {
    for (int j = 0; j < 64; j++) {
      if (done()) return;
      LL_PAUSE();
    }
    const int64_t t = now_ns();
    if (i == 0) t0 = t;
    if (t - t0 > kYieldNs) break;
    if (t - t0 > kSpinNs) std::this_thread::yield();   // sched_yield on POSIX
  }
  for (;;) {
    w.sleepers.fetch_add(1);
    const uint32_t seen = w.v.load();
    if (done()) {
      w.sleepers.fetch_sub(1);
      return;
    }
#if LL_HAVE_FUTEX
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&w.v), FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
#else
    {
      std::unique_lock<std::mutex> lock(w.mu);
      w.cv.wait_for(lock, std::chrono::milliseconds(1), [&] { return w.v.load() != seen; });
    }
#endif
    w.sleepers.fetch_sub(1);
    if (done()) return;
  }
}
}  // namespace

struct PoolState {
  std::vector<std::thread> workers;
  // generation.v: job id, 2 * job counter + kind (0: run(), every thread;
  // 1: run_chunks()); 32 bits, compared for equality only, so wrapping is fine.
  WaitWord generation;
  uint32_t job_counter = 0;  // caller only
  WaitWord n_done;           // .v: workers finished with the current job
  std::atomic<bool> stop{false};
  const std::function<void(int, int)>* job = nullptr;
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
  // barrier: barrier_phase.v counts completed barriers
  std::atomic<int> barrier_count{0};
  WaitWord barrier_phase;
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
bool try_join(PoolState* s, uint32_t gen) {
  const uint64_t want = (uint64_t)(gen >> 1) << 32;
  uint64_t v = s->join.load(std::memory_order_acquire);
  while ((v & ~(uint64_t)0xffffffffu) == want && !(v & kClosed)) {
    if (s->join.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) return true;
  }
  return false;
}

void mark_done(PoolState* s) {
  s->n_done.v.fetch_add(1);  // seq_cst: pairs with the sleepers check in wake_all
  wake_all(s->n_done);
}

void worker_loop(PoolState* s, int ith, int nth) {
  uint32_t seen = 0;
  for (;;) {
    wait_until(s->generation, [&] { return s->generation.v.load(std::memory_order_acquire) != seen; });
    seen = s->generation.v.load(std::memory_order_acquire);
    if (s->stop.load()) return;
    if ((seen & 1) == 0) {
      run_job(s, ith, nth);
      mark_done(s);
    } else if (try_join(s, seen)) {
      run_chunk_loop(s);
      mark_done(s);
    }
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : state_(new State), n_threads_(n_threads < 1 ? 1 : n_threads) {
  for (int i = 1; i < n_threads_; i++) state_->workers.emplace_back(worker_loop, state_, i, n_threads_);
}

ThreadPool::~ThreadPool() {
  state_->stop.store(true);
  state_->generation.v.store(2 * ++state_->job_counter);
  wake_all(state_->generation);
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
  s->n_done.v.store(0, std::memory_order_relaxed);
  s->generation.v.store(2 * ++s->job_counter);  // seq_cst: publishes the fields above
  wake_all(s->generation);
  run_job(s, 0, n_threads_);
  const uint32_t want = (uint32_t)n_threads_ - 1;
  wait_until(s->n_done, [&] { return s->n_done.v.load(std::memory_order_acquire) == want; });
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
  s->n_done.v.store(0, std::memory_order_relaxed);
  const uint32_t counter = ++s->job_counter;
  const uint32_t gen = 2 * counter + 1;
  s->join.store((uint64_t)(gen >> 1) << 32, std::memory_order_relaxed);
  s->generation.v.store(gen);  // seq_cst: publishes the fields above
  wake_all(s->generation);
  run_chunk_loop(s);
  // Close the job: workers that have not joined by now never will.
  const uint64_t v = s->join.fetch_or(kClosed, std::memory_order_acq_rel);
  const uint32_t joined = (uint32_t)(v & 0x7fffffffu);
  wait_until(s->n_done, [&] { return s->n_done.v.load(std::memory_order_acquire) == joined; });
  s->chunk_job = nullptr;
  if (s->error) std::rethrow_exception(s->error);
}

void ThreadPool::barrier() {
  State* s = state_;
  if (n_threads_ == 1) return;
  const uint32_t phase = s->barrier_phase.v.load(std::memory_order_acquire);
  if (s->barrier_count.fetch_add(1, std::memory_order_acq_rel) == n_threads_ - 1) {
    s->barrier_count.store(0, std::memory_order_relaxed);
    s->barrier_phase.v.fetch_add(1);
    wake_all(s->barrier_phase);
    return;
  }
  wait_until(s->barrier_phase, [&] { return s->barrier_phase.v.load(std::memory_order_acquire) != phase; });
}

int default_thread_count() {
  static const int n = physical_core_count();  // the OS is asked once
  return n;
}

namespace {
std::mutex g_shared_pool_mu;
std::unique_ptr<ThreadPool> g_shared_pool;
}  // namespace

std::unique_lock<std::mutex> shared_pool_lock() {
  return std::unique_lock<std::mutex>(g_shared_pool_mu);
}

ThreadPool& shared_pool(int n_threads) {
  if (!g_shared_pool || g_shared_pool->size() != n_threads) {
    g_shared_pool.reset();
    g_shared_pool.reset(new ThreadPool(n_threads));
  }
  return *g_shared_pool;
}

}  // namespace ll
