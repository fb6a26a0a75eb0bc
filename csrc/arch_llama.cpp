// arch_llama.cpp - one layer of the `llama` graph (SmolLM2, TinyLlama, Llama 2/3,
// Mistral-style files), as llama.cpp builds it:
//   h = x + Wo . attn(rope(Wq . rms(x)), rope(Wk . rms(x)), Wv . rms(x))
//   x = h + Wdown . (silu(Wgate . rms(h)) * (Wup . rms(h)))
// RoPE in "normal" mode (adjacent pairs), grouped-query attention. Files with
// experts (Mixtral style: expert_count > 0, ffn_*_exps) replace the FFN by the
// mixture of experts (moe.cpp): softmax routing, top-k weights normalised to sum 1.
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
  project_qkv(m, L, n);                                           // q, k, v from xb
  rope_qk(m, b, L);
  attention_step(m, kv, b, il, L.sliding ? hp.sliding_window : 0);  // att [n, n_head * hdv]
  linear(m, L.wo, s.att.data(), n, s.proj.data());                // proj [n, E]
  add_into(m, s.x.data(), s.proj.data(), n * E);

  // --- feed-forward (SwiGLU, or a mixture of SwiGLU experts) ---
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
