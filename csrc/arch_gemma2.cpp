// arch_gemma2.cpp - one layer of the `gemma2` graph, as llama.cpp builds it:
//   h = x + rms_post(Wo . attn(rope_neox(Wq . rms(x)), rope_neox(Wk . rms(x)), Wv . rms(x)))
//   x = h + rms_post_ffw(Wdown . (gelu_tanh(Wgate . rms(h)) * (Wup . rms(h))))
// Attention scores are scaled by hp.attn_scale (1/sqrt(key_length); 1/sqrt(n_embd/n_head)
// for the 27B model) and soft-capped: s -> cap * tanh(s / cap) (hp.attn_softcap). Layers
// with il % 2 == 0 attend to a sliding window; odd layers are global. Embeddings are
// scaled by sqrt(n_embd) and the final logits soft-capped in model.cpp.
#include "model.h"
#include "ops.h"

namespace ll {

void gemma2_layer(Model& m, KVCache& kv, const Batch& b, int32_t il) {
  const HParams& hp = m.hp;
  const LayerWeights& L = m.layers[il];
  Scratch& s = m.s;
  const int64_t n = b.n_tokens, E = hp.n_embd;

  // --- attention ---
  rmsnorm_rows(m, s.x.data(), L.attn_norm, s.xb.data(), n, E);   // xb [n, E]
  project_qkv(m, L, n);                                           // q, k, v from xb
  rope_qk(m, b, L);
  attention_step(m, kv, b, il, L.sliding ? hp.sliding_window : 0);  // att [n, n_head * hdv]
  linear(m, L.wo, s.att.data(), n, s.proj.data());                // proj [n, E]
  rmsnorm_rows(m, s.proj.data(), L.post_attn_norm, s.proj.data(), n, E);
  add_into(m, s.x.data(), s.proj.data(), n * E);

  // --- feed-forward (GELU-gated) ---
  rmsnorm_rows(m, s.x.data(), L.ffn_norm, s.xb.data(), n, E);
  project_gate_up(m, L, n);                                       // gate, up [n, n_ff] from xb
  gated_activation(m, s.gate.data(), s.up.data(), n * hp.n_ff, true);
  linear(m, L.ffn_down, s.gate.data(), n, s.proj.data());         // proj [n, E]
  rmsnorm_rows(m, s.proj.data(), L.post_ffn_norm, s.proj.data(), n, E);
  add_into(m, s.x.data(), s.proj.data(), n * E);
}

}  // namespace ll
