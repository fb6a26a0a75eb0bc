// sampling.h - the parts of token sampling that must not touch the whole vocabulary
// more than once (the Gemma 3 vocabulary has 262,144 entries). The rest of the
// sampler (penalties, filters, the seeded draw) is numpy in llamalite/sampling.py.
#pragma once

#include <cstdint>

namespace llamalite {

// The ids of the k largest logits, best first (ties: the lower id first), written
// to out[0..min(k, n)). NaN counts as -inf. One pass over logits with a k-entry
// heap when k is small beside n (the usual top-k of 40), a partial sort otherwise.
// Returns the number of ids written. Used by the top-k filter and for top-n logprobs.
int64_t top_k_indices(const float* logits,  // [n]
                      int64_t n, int64_t k,
                      int32_t* out);         // [min(k, n)]

}  // namespace llamalite
