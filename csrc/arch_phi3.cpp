// arch_phi3.cpp - one layer of the `phi3` graph (Phi-3, Phi-3.5, Phi-4 mini), as llama.cpp
// builds it:
//   q | k | v = Wqkv . rms(x)                                   (one fused matrix)
//   h = x + Wo . attn(rope_neox(q), rope_neox(k), v)            (scale 1/sqrt(head_dim))
//   g | u = Wup . rms(h)                                        (gate rows, then up rows)
//   x = h + Wdown . (silu(g) * u)
// RoPE divides each pair's frequency by LongRoPE's short or long factors (chosen by the
// loader from the context size, as llama.cpp does) and scales cos and sin by the file's
// attention factor (hp.rope_attn_factor). llama.cpp disables Phi-3's sliding window, so
// every layer is global here too. The loader binds Wqkv and Wup as row views (q, k, v;
// gate, up), so the fused matmuls run as the separate ones of the other families do.
#include "model.h"
#include "ops.h"

namespace ll {

void phi3_layer(Model& m, KVCache& kv, const Batch& b, int32_t il) {
  const HParams& hp = m.hp;
  const LayerWeights& L = m.layers[il];
  Scratch& s = m.s;
  const int64_t n = b.n_tokens, E = hp.n_embd;

  // --- attention ---
  rmsnorm_rows(m, s.x.data(), L.attn_norm, s.xb.data(), n, E);   // xb [n, E]
  project_qkv(m, L, n);                                           // q, k, v: Wqkv's row views . xb
  rope_qk(m, b, L);
  attention_step(m, kv, b, il, 0);                                // att [n, n_head * hdv]
  linear(m, L.wo, s.att.data(), n, s.proj.data());                // proj [n, E]
  add_into(m, s.x.data(), s.proj.data(), n * E);

  // --- feed-forward (SwiGLU, fused gate-up) ---
  rmsnorm_rows(m, s.x.data(), L.ffn_norm, s.xb.data(), n, E);
  project_gate_up(m, L, n);                                       // gate, up: Wup's row views . xb
  gated_activation(m, s.gate.data(), s.up.data(), n * hp.n_ff, false);
  linear(m, L.ffn_down, s.gate.data(), n, s.proj.data());         // proj [n, E]
  add_into(m, s.x.data(), s.proj.data(), n * E);
}

}  // namespace ll
