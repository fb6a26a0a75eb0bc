// sampling.cpp - top-k selection over a logit vector (see sampling.h).
#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace llamalite {

namespace {

struct Candidate {
  float logit;
  int32_t id;
};

float finite_or_neg_inf(float v) {
  return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
}

// Strict "a ranks before b": larger logit, then lower id.
bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// Small k: a heap whose top is the worst kept candidate. Logits are scanned in
// id order, so a later equal logit never displaces a kept one (lower id wins).
// Blocks of 16 whose maximum cannot beat the heap's worst are skipped whole.
int64_t top_k_heap(const float* logits, int64_t n, int64_t k, int32_t* out) {
  std::vector<Candidate> heap(static_cast<size_t>(k));  // [k]
  for (int64_t i = 0; i < k; ++i) {
    heap[i] = {finite_or_neg_inf(logits[i]), static_cast<int32_t>(i)};
  }
  std::make_heap(heap.begin(), heap.end(), ranks_before);
  float worst = heap.front().logit;
  constexpr int64_t kBlock = 16;
  int64_t i = k;
  for (; i < n; ++i) {
    if (i % kBlock == 0 && i + kBlock <= n) {
      float block_max = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < kBlock; ++j) {
        block_max = logits[i + j] > block_max ? logits[i + j] : block_max;  // NaN is skipped
      }
      if (!(block_max > worst)) {
        i += kBlock - 1;
        continue;
      }
    }
    const float v = logits[i];
    if (v > worst) {  // false for NaN
      std::pop_heap(heap.begin(), heap.end(), ranks_before);
      heap.back() = {v, static_cast<int32_t>(i)};
      std::push_heap(heap.begin(), heap.end(), ranks_before);
      worst = heap.front().logit;
    }
  }
  std::sort_heap(heap.begin(), heap.end(), ranks_before);
  for (int64_t j = 0; j < k; ++j) out[j] = heap[j].id;
  return k;
}

int64_t top_k_sort(const float* logits, int64_t n, int64_t k, int32_t* out) {
  std::vector<Candidate> all(static_cast<size_t>(n));  // [n]
  for (int64_t i = 0; i < n; ++i) all[i] = {finite_or_neg_inf(logits[i]), static_cast<int32_t>(i)};
  std::partial_sort(all.begin(), all.begin() + k, all.end(), ranks_before);
  for (int64_t j = 0; j < k; ++j) out[j] = all[j].id;
  return k;
}

}  // namespace

int64_t top_k_indices(const float* logits, int64_t n, int64_t k, int32_t* out) {
  k = std::min(k, n);
  if (k <= 0) return 0;
  if (k * 64 <= n) return top_k_heap(logits, n, k, out);
  return top_k_sort(logits, n, k, out);
}

}  // namespace llamalite
