// sampling.cpp - top-k selection over a logit vector (see sampling.h).
#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace ll {

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

// Logit buckets for top-p: bucket b holds logits in (max - (b+1)/kBucketsPerUnit,
// max - b/kBucketsPerUnit]; everything below max - kBucketRange shares the last one
// (its probability mass is below e^-40 each, so it matters only when p is ~1).
constexpr int32_t kBucketsPerUnit = 100;
constexpr int32_t kBucketRange = 40;
constexpr int32_t kBuckets = kBucketsPerUnit * kBucketRange + 1;

int32_t bucket_of(float logit, float max_logit) {
  const float d = (max_logit - logit) * kBucketsPerUnit;  // >= 0
  return d < static_cast<float>(kBuckets - 1) ? static_cast<int32_t>(d) : kBuckets - 1;
}

}  // namespace

int64_t top_p_indices(const float* logits, int64_t n, double p, int32_t* out) {
  float max_logit = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) max_logit = logits[i] > max_logit ? logits[i] : max_logit;
  if (max_logit == -std::numeric_limits<float>::infinity()) return 0;

  std::vector<double> bucket_mass(kBuckets, 0.0);     // [kBuckets] sum of exp(logit - max)
  std::vector<int64_t> bucket_start(kBuckets + 1, 0);  // [kBuckets + 1] counts, then offsets
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = logits[i];
    if (!(v > -std::numeric_limits<float>::infinity())) continue;  // -inf and NaN: no mass
    const double e = std::exp(static_cast<double>(v - max_logit));
    const int32_t b = bucket_of(v, max_logit);
    bucket_mass[b] += e;
    bucket_start[b + 1] += 1;
    total += e;
  }
  // The first bucket where the running mass reaches p: everything above it is kept.
  const double target = p * total;
  double mass_before = 0.0;
  int32_t cut_bucket = 0;
  while (cut_bucket < kBuckets - 1 && mass_before + bucket_mass[cut_bucket] < target) {
    mass_before += bucket_mass[cut_bucket];
    ++cut_bucket;
  }
  for (int32_t b = 0; b < kBuckets; ++b) bucket_start[b + 1] += bucket_start[b];
  const int64_t n_above = bucket_start[cut_bucket];

  // Scatter the kept buckets' ids (buckets in order) and gather the cut bucket.
  std::vector<int64_t> fill(bucket_start.begin(), bucket_start.begin() + cut_bucket + 1);
  std::vector<Candidate> cut;  // [members of the cut bucket]
  cut.reserve(static_cast<size_t>(bucket_start[cut_bucket + 1] - n_above));
  for (int64_t i = 0; i < n; ++i) {
    const float v = logits[i];
    if (!(v > -std::numeric_limits<float>::infinity())) continue;
    const int32_t b = bucket_of(v, max_logit);
    if (b < cut_bucket) {
      out[fill[b]++] = static_cast<int32_t>(i);
    } else if (b == cut_bucket) {
      cut.push_back({v, static_cast<int32_t>(i)});
    }
  }
  std::sort(cut.begin(), cut.end(), ranks_before);
  int64_t count = n_above;
  double mass = mass_before;
  for (const Candidate& c : cut) {
    out[count++] = c.id;
    mass += std::exp(static_cast<double>(c.logit - max_logit));
    if (mass >= target) break;
  }
  return count;
}

int64_t top_k_indices(const float* logits, int64_t n, int64_t k, int32_t* out) {
  k = std::min(k, n);
  if (k <= 0) return 0;
  if (k * 64 <= n) return top_k_heap(logits, n, k, out);
  return top_k_sort(logits, n, k, out);
}

}  // namespace ll
