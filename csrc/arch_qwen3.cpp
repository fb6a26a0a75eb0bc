// arch_qwen3.cpp - one layer of the `qwen3` and `qwen3moe` graphs, as llama.cpp
// builds them:
//   q, k = rope_neox(rms_head(Wq . rms(x))), rope_neox(rms_head(Wk . rms(x)))
//   h    = x + Wo . attn(q, k, Wv . rms(x))                    (scale 1/sqrt(head_dim))
//   x    = h + ffn(rms(h))
// ffn: qwen3 the SwiGLU Wdown . (silu(Wgate . y) * (Wup . y)); qwen3moe the mixture
// of experts (moe.cpp) with softmax routing and the top-k weights normalised to sum 1.
// Grouped-query attention; the output projection is tied to the embeddings or not.
#include "model.h"

namespace ll {

void qwen3_layer(Model& m, KVCache& kv, const Batch& b, int32_t il) {
  const HParams& hp = m.hp;
  const LayerWeights& L = m.layers[il];
  Scratch& s = m.s;
  const int64_t n = b.n_tokens, E = hp.n_embd;

  // --- attention ---
  rmsnorm_rows(m, s.x.data(), L.attn_norm, s.xb.data(), n, E);   // xb [n, E]
  project_qkv(m, L, n);                                           // q, k, v from xb
  rmsnorm_heads(m, s.q.data(), L.q_norm, n, hp.n_head, hp.head_dim);
  rmsnorm_heads(m, s.k.data(), L.k_norm, n, hp.n_head_kv, hp.head_dim);
  rope_qk(m, b, L);
  attention_step(m, kv, b, il, 0);                                // att [n, n_head * hdv]
  linear(m, L.wo, s.att.data(), n, s.proj.data());                // proj [n, E]
  add_into(m, s.x.data(), s.proj.data(), n * E);

  // --- feed-forward ---
  rmsnorm_rows(m, s.x.data(), L.ffn_norm, s.xb.data(), n, E);
  if (hp.n_expert > 0) {
    moe_ffn(m, L, n);                                             // proj [n, E] from xb
  } else {
    project_gate_up(m, L, n);                                     // gate, up [n, n_ff] from xb
    gated_activation(m, s.gate.data(), s.up.data(), n * hp.n_ff, false);
    linear(m, L.ffn_down, s.gate.data(), n, s.proj.data());       // proj [n, E]
  }
  add_into(m, s.x.data(), s.proj.data(), n * E);
}

}  // namespace ll
