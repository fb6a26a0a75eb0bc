// moe.cpp - the mixture-of-experts feed-forward block, as llama.cpp's build_moe_ffn
// computes it for softmax-routed SwiGLU experts (qwen3moe, Mixtral-style llama):
//   p      = softmax(Wrouter . y)                      over the n_expert experts
//   top    = the n_expert_used largest p, best first  (ties: lower expert id)
//   w_j    = p_top_j / max(sum_j p_top_j, 2^-14)       (normalised; neither family scales them)
//   out    = sum_j w_j * Wdown_e . (silu(Wgate_e . y) * (Wup_e . y)),  e = top_j, j in order
//
// A step of several tokens groups them by expert: the rows routed to expert e are gathered,
// multiplied by that expert's slices of the 3-D tensors only (one matmul each for
// gate and up, sharing one activation quantization, and one for down), and
// written to their (token, slot) row; a single token (decode) runs the gate and up
// of all its experts in one call instead. The weighted sum then runs per token in slot
// order. Every matmul is linear(), which gives a row the same bits whatever other
// rows share the call, and the routing and the sum are per token, so a token's
// result does not depend on the rest of the batch (batch invariance).
// With activation statistics on (ActStats), those matmuls of one expert's views add
// the squares of their inputs to that expert's part of the 3-D tensor's statistics:
// gate and up see the normed hidden states of the (token, slot) rows routed to the
// expert, down the silu(gate) * up rows, as llama-imatrix collects MUL_MAT_ID.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "model.h"

namespace ll {

namespace {

// The smallest positive normal float16: llama.cpp's lower clamp of the weight sum.
constexpr float kMinWeightSum = 6.103515625e-5f;

// Softmax over one token's router logits, its top-k and their normalised weights.
void route_token(const float* logits, int32_t n_expert, int32_t k, int32_t* sel, float* w,
                 float* probs) {
  float mx = logits[0];
  for (int32_t e = 1; e < n_expert; ++e) mx = std::max(mx, logits[e]);
  double sum = 0.0;
  for (int32_t e = 0; e < n_expert; ++e) {
    probs[e] = std::exp(logits[e] - mx);
    sum += probs[e];
  }
  const float inv = (float)(1.0 / sum);
  for (int32_t e = 0; e < n_expert; ++e) probs[e] *= inv;
  // top-k by repeated selection (k is small): best first, ties to the lower id
  for (int32_t j = 0; j < k; ++j) {
    int32_t best = -1;
    for (int32_t e = 0; e < n_expert; ++e) {
      bool taken = false;
      for (int32_t i = 0; i < j; ++i) taken |= sel[i] == e;
      if (!taken && (best < 0 || probs[e] > probs[best])) best = e;
    }
    sel[j] = best;
    w[j] = probs[best];
  }
  float wsum = 0.0f;
  for (int32_t j = 0; j < k; ++j) wsum += w[j];
  wsum = std::max(wsum, kMinWeightSum);
  for (int32_t j = 0; j < k; ++j) w[j] /= wsum;
}

// One token (decode): the gate and up matmuls of all its experts in one call (one
// activation quantization, one pool job per 8 weights), then each expert's down
// straight into its slot. Bit-identical to grouped_experts (linear_shared gives each
// weight linear()'s result).
void decode_experts(Model& m, const LayerWeights& L) {
  MoEScratch& ms = m.s.moe;
  const int32_t K = m.hp.n_expert_used;
  const int64_t E = m.hp.n_embd, F = m.hp.n_ff_exp;
  std::vector<const Weight*> ws(2 * K);
  std::vector<float*> ys(2 * K);
  for (int32_t j = 0; j < K; ++j) {   // gates first, then ups: runs of one activation family
    ws[j] = &L.gate_exps[ms.sel[j]];
    ys[j] = ms.ge.data() + j * F;
    ws[K + j] = &L.up_exps[ms.sel[j]];
    ys[K + j] = ms.ue.data() + j * F;
  }
  linear_shared(m, ws.data(), ys.data(), 2 * K, m.s.xb.data(), 1);   // ge, ue [K, F]
  gated_activation(m, ms.ge.data(), ms.ue.data(), K * F, false);
  for (int32_t j = 0; j < K; ++j) {
    linear(m, L.down_exps[ms.sel[j]], ms.ge.data() + j * F, 1, ms.y.data() + j * E);
  }
}

// Any number of tokens: the (token, slot) rows routed to each expert are gathered,
// run through that expert's matmuls together and written back to their slots.
void grouped_experts(Model& m, const LayerWeights& L, int64_t n) {
  Scratch& s = m.s;
  MoEScratch& ms = s.moe;
  const int32_t X = m.hp.n_expert, K = m.hp.n_expert_used;
  const int64_t E = m.hp.n_embd, F = m.hp.n_ff_exp;
  // (token, slot) rows grouped by expert, in token order (a counting sort)
  std::vector<int64_t> start(X + 1, 0);
  for (int64_t i = 0; i < n * K; ++i) ++start[ms.sel[i] + 1];
  for (int32_t e = 0; e < X; ++e) start[e + 1] += start[e];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n * K; ++i) ms.rows[fill[ms.sel[i]]++] = (int32_t)i;
  }

  // each used expert on its tokens: only its slices of the expert tensors are read
  for (int32_t e = 0; e < X; ++e) {
    const int64_t c = start[e + 1] - start[e];
    if (c == 0) continue;
    const int32_t* rows = ms.rows.data() + start[e];
    parallel_for(m, c, E, [&](int64_t i0, int64_t i1) {   // gather the routed tokens
      for (int64_t i = i0; i < i1; ++i) {
        std::memcpy(ms.xe.data() + i * E, s.xb.data() + (rows[i] / K) * E, E * sizeof(float));
      }
    });
    const Weight* ws[2] = {&L.gate_exps[e], &L.up_exps[e]};
    float* ys[2] = {ms.ge.data(), ms.ue.data()};
    linear_shared(m, ws, ys, 2, ms.xe.data(), c);                  // ge, ue [c, F]
    gated_activation(m, ms.ge.data(), ms.ue.data(), c * F, false);
    linear(m, L.down_exps[e], ms.ge.data(), c, ms.xe.data());      // xe [c, E]
    parallel_for(m, c, E, [&](int64_t i0, int64_t i1) {   // to the (token, slot) rows
      for (int64_t i = i0; i < i1; ++i) {
        std::memcpy(ms.y.data() + (int64_t)rows[i] * E, ms.xe.data() + i * E, E * sizeof(float));
      }
    });
  }
}

}  // namespace

void moe_ffn(Model& m, const LayerWeights& L, int64_t n) {
  const HParams& hp = m.hp;
  Scratch& s = m.s;
  MoEScratch& ms = s.moe;
  const int32_t X = hp.n_expert, K = hp.n_expert_used;
  const int64_t E = hp.n_embd;

  // --- routing (per token) ---
  linear(m, L.ffn_gate_inp, s.xb.data(), n, ms.router.data());   // router [n, X]
  parallel_for(m, n, 8 * (int64_t)X * (K + 4), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* r = ms.router.data() + t * X;
      route_token(r, X, K, ms.sel.data() + t * K, ms.w.data() + t * K, r);
    }
  });

  // --- the chosen experts: y [n, K, E] ---
  if (n == 1) {
    decode_experts(m, L);
  } else {
    grouped_experts(m, L, n);
  }

  // --- weighted sum per token, in slot order ---
  parallel_for(m, n, 2 * K * E, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* out = s.proj.data() + t * E;
      const float* y = ms.y.data() + t * K * E;
      const float* w = ms.w.data() + t * K;
      for (int64_t i = 0; i < E; ++i) out[i] = y[i] * w[0];
      for (int32_t j = 1; j < K; ++j) {
        for (int64_t i = 0; i < E; ++i) out[i] += y[j * E + i] * w[j];
      }
    }
  });
}

}  // namespace ll
