// arch_qwen2.cpp - one layer of the `qwen2` graph (Qwen2, Qwen2.5), as llama.cpp builds it:
//   q, k, v = Wq . rms(x) + bq, Wk . rms(x) + bk, Wv . rms(x) + bv
//   h = x + Wo . attn(rope_neox(q), rope_neox(k), v)            (scale 1/sqrt(head_dim))
//   x = h + Wdown . (silu(Wgate . rms(h)) * (Wup . rms(h)))
// The llama layer with Q/K/V biases (project_qkv adds them) and NEOX RoPE (hp.rope_neox).
#include "model.h"
#include "ops.h"

namespace ll {

void qwen2_layer(Model& m, KVCache& kv, const Batch& b, int32_t il) {
  const HParams& hp = m.hp;
  const LayerWeights& L = m.layers[il];
  Scratch& s = m.s;
  const int64_t n = b.n_tokens, E = hp.n_embd;

  // --- attention ---
  rmsnorm_rows(m, s.x.data(), L.attn_norm, s.xb.data(), n, E);   // xb [n, E]
  project_qkv(m, L, n);                                           // q, k, v (+ biases) from xb
  rope_qk(m, b, L);
  attention_step(m, kv, b, il, 0);                                // att [n, n_head * hdv]
  linear(m, L.wo, s.att.data(), n, s.proj.data());                // proj [n, E]
  add_into(m, s.x.data(), s.proj.data(), n * E);

  // --- feed-forward (SwiGLU) ---
  rmsnorm_rows(m, s.x.data(), L.ffn_norm, s.xb.data(), n, E);
  project_gate_up(m, L, n);                                       // gate, up [n, n_ff] from xb
  gated_activation(m, s.gate.data(), s.up.data(), n * hp.n_ff, false);
  linear(m, L.ffn_down, s.gate.data(), n, s.proj.data());         // proj [n, E]
  add_into(m, s.x.data(), s.proj.data(), n * E);
}

}  // namespace ll
