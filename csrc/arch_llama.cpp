// arch_llama.cpp - one layer of the `llama` graph (SmolLM2, TinyLlama, Llama 2/3,
// Mistral-style files), as llama.cpp builds it:
//   h = x + Wo . attn(rope(Wq . rms(x)), rope(Wk . rms(x)), Wv . rms(x))
//   x = h + Wdown . (silu(Wgate . rms(h)) * (Wup . rms(h)))
// RoPE in "normal" mode (adjacent pairs), grouped-query attention.
#include "model.h"
#include "ops.h"

namespace ll {

void llama_layer(Model& m, KVCache& kv, const Batch& b, int32_t il) {
  const HParams& hp = m.hp;
  const LayerWeights& L = m.layers[il];
  Scratch& s = m.s;
  const int64_t n = b.n_tokens, E = hp.n_embd;

  // --- attention ---
  rmsnorm_rows(m, s.x.data(), L.attn_norm, s.xb.data(), n, E);   // xb [n, E]
  linear(m, L.wq, s.xb.data(), n, s.q.data());                    // q  [n, n_head * hd]
  linear(m, L.wk, s.xb.data(), n, s.k.data());                    // k  [n, n_head_kv * hd]
  linear(m, L.wv, s.xb.data(), n, s.v.data());                    // v  [n, n_head_kv * hdv]
  rope_qk(m, b, L.rope_base);
  attention_step(m, kv, b, il, L.sliding ? hp.sliding_window : 0);  // att [n, n_head * hdv]
  linear(m, L.wo, s.att.data(), n, s.proj.data());                // proj [n, E]
  add_into(m, s.x.data(), s.proj.data(), n * E);

  // --- feed-forward (SwiGLU) ---
  rmsnorm_rows(m, s.x.data(), L.ffn_norm, s.xb.data(), n, E);
  linear(m, L.ffn_gate, s.xb.data(), n, s.gate.data());           // gate [n, n_ff]
  linear(m, L.ffn_up, s.xb.data(), n, s.up.data());               // up   [n, n_ff]
  gated_activation(m, s.gate.data(), s.up.data(), n * hp.n_ff, false);
  linear(m, L.ffn_down, s.gate.data(), n, s.proj.data());         // proj [n, E]
  add_into(m, s.x.data(), s.proj.data(), n * E);
}

}  // namespace ll
