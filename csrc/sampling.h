// sampling.h - the parts of token sampling that must not touch the whole vocabulary
// more than once (the Gemma 3 vocabulary has 262,144 entries). The rest of the
// sampler (penalties, filters, the seeded draw) is numpy in llamalite/sampling.py.
#pragma once

#include <cstdint>

namespace ll {

// The ids of the k largest logits, best first (ties: the lower id first), written
// to out[0..min(k, n)). NaN counts as -inf. One pass over logits with a k-entry
// heap when k is small beside n (the usual top-k of 40), a partial sort otherwise.
// Returns the number of ids written. Used by the top-k filter and for top-n logprobs.
int64_t top_k_indices(const float* logits,  // [n]
                      int64_t n, int64_t k,
                      int32_t* out);         // [min(k, n)]

// The top-p (nucleus) set over the whole vocabulary: the fewest ids, taken best
// first (ties: the lower id first), whose softmax mass over all n logits reaches p
// (0 < p <= 1). Written to out[0..count) grouped coarsely best first (by logit
// buckets 1/100 wide; exact order only inside the bucket where the cut falls).
// Cost O(n) plus a sort of one bucket, never a sort of the vocabulary: this is
// the top-p filter when top-k is off. NaN counts as -inf. Returns the count (0
// when every logit is -inf or NaN).
int64_t top_p_indices(const float* logits,  // [n]
                      int64_t n, double p,
                      int32_t* out);         // [n]

}  // namespace ll
