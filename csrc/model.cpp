// model.cpp - binding weights, validating a step, and the step driver shared by
// every architecture (embedding, layers, logits for the requested rows).
#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>

#include "ops.h"
#include "ops_simd.h"
#include "platform.h"

namespace ll {

// Work (roughly, in multiply-adds) below which an element-wise op runs on the
// calling thread: waking the pool costs more than the op.
constexpr int64_t kInlineWork = 16384;
// Query tokens of one sequence that share each loaded K/V row in prefill.
constexpr int32_t kAttnTileTokens = 8;

namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

std::string shape_str(int64_t a, int64_t b, int64_t c = 1) {
  return "[" + std::to_string(a) + ", " + std::to_string(b) + (c == 1 ? "" : ", " + std::to_string(c)) + "]";
}

// Finds `name`, checks its shape is [K, N] (GGUF order; [K, N, X] for X > 1: X
// matrices, the experts of a 3-D expert tensor) and that its bytes lie in the file,
// and returns a view of all N * X rows. `need_f32` for norm vectors read as plain floats.
Weight bind_weight(const Model& m, const std::map<std::string, TensorDesc>& tensors,
            const std::string& name, int64_t K, int64_t N, bool need_f32, int64_t X = 1) {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail("tensor '" + name + "' is missing from the file");
  const TensorDesc& t = it->second;
  if (!is_known_type(t.type)) fail("tensor '" + name + "' has unknown type id " + std::to_string(t.type));
  const TypeTraits& tr = type_traits(t.type);
  if (t.ne0 != K || t.ne1 != N || t.ne2 != X) {
    fail("tensor '" + name + "' has shape " + shape_str(t.ne0, t.ne1, t.ne2) + ", expected " +
         shape_str(K, N, X));
  }
  N *= X;
  if (need_f32 && t.type != TYPE_F32) {
    fail("tensor '" + name + "' is " + tr.name + "; norm weights must be F32");
  }
  if (!need_f32 && !tr.can_matmul) {
    fail(std::string("tensor '") + name + "' has type " + tr.name + ", which matmul does not support");
  }
  if (K % tr.block_size != 0) {
    fail("tensor '" + name + "' row length " + std::to_string(K) + " is not a multiple of " +
         tr.name + "'s block size " + std::to_string(tr.block_size));
  }
  const uint64_t rb = row_bytes(t.type, K);
  if (N > 0 && rb > (m.file_size / (uint64_t)N)) fail("tensor '" + name + "' is larger than the file");
  const uint64_t nbytes = rb * (uint64_t)N;
  if (t.offset > m.file_size || nbytes > m.file_size - t.offset) {
    fail("tensor '" + name + "' ends at byte " + std::to_string(t.offset + nbytes) +
         " but the file has " + std::to_string(m.file_size) + " bytes");
  }
  return Weight{m.file + t.offset, t.type, K, N};
}

void check_hparams(const HParams& hp) {
  auto positive = [](const char* what, int64_t v) {
    if (v <= 0) fail(std::string("hyperparameter ") + what + " must be positive, got " + std::to_string(v));
  };
  positive("n_vocab", hp.n_vocab);
  positive("n_embd", hp.n_embd);
  positive("n_layer", hp.n_layer);
  positive("n_head", hp.n_head);
  positive("n_head_kv", hp.n_head_kv);
  positive("head_dim", hp.head_dim);
  positive("head_dim_v", hp.head_dim_v);
  positive("n_ff", hp.n_ff);
  if (hp.n_head % hp.n_head_kv != 0) {
    fail("n_head " + std::to_string(hp.n_head) + " is not a multiple of n_head_kv " +
         std::to_string(hp.n_head_kv));
  }
  if (hp.n_rot <= 0 || hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0) {
    fail("rope dimension " + std::to_string(hp.n_rot) + " must be even and in (0, head_dim=" +
         std::to_string(hp.head_dim) + "]");
  }
  if (!(hp.eps > 0.0f) || !(hp.rope_base > 0.0f) || !(hp.rope_base_swa > 0.0f) ||
      !(hp.rope_freq_scale > 0.0f) || !(hp.rope_freq_scale_swa > 0.0f) || !(hp.rope_attn_factor > 0.0f)) {
    fail("eps, rope bases, rope_freq_scale(_swa) and rope_attn_factor must be positive");
  }
  if (!(hp.attn_softcap >= 0.0f) || !(hp.final_softcap >= 0.0f)) {
    fail("attn_softcap and final_softcap must be >= 0 (0: none)");
  }
  if (hp.sliding_window < 0 || hp.swa_pattern <= 0) fail("bad sliding window parameters");
  if (hp.n_expert < 0 || hp.n_expert_used < 0 || hp.n_ff_exp < 0) fail("expert counts must not be negative");
  if (hp.n_expert > 0 && (hp.n_expert_used <= 0 || hp.n_expert_used > hp.n_expert || hp.n_ff_exp <= 0)) {
    fail("a mixture of experts needs 0 < n_expert_used <= n_expert and n_ff_exp > 0 (got n_expert " +
         std::to_string(hp.n_expert) + ", n_expert_used " + std::to_string(hp.n_expert_used) +
         ", n_ff_exp " + std::to_string(hp.n_ff_exp) + ")");
  }
}

// A bound tensor's rows as consecutive views of rows[0], rows[1], ... rows (they sum
// to all.N): a ggml matrix's rows are contiguous, so a view is a pointer and a count.
std::vector<Weight> split_rows(const Weight& all, const std::vector<int64_t>& rows) {
  const uint64_t rb = row_bytes(all.type, all.K);
  std::vector<Weight> out;
  int64_t r0 = 0;
  for (int64_t N : rows) {
    out.push_back(Weight{all.data + (uint64_t)r0 * rb, all.type, all.K, N});
    r0 += N;
  }
  return out;
}

// The X experts of a bound 3-D tensor (all N * X rows) as X views of N rows each.
std::vector<Weight> split_experts(const Weight& all, int64_t X) {
  return split_rows(all, std::vector<int64_t>(X, all.N / X));
}

}  // namespace

// --- loading ---------------------------------------------------------------------
Model::X8Buffer::~X8Buffer() {
  unmap_anonymous(p, n);
}

namespace {

// Packs every matmul weight that has an x8 layout (the layers', and the output
// projection, tied to the embeddings or not) into one buffer, in slices of about
// kRepackSlice bytes run on the pool. After each slice the file's whole pages
// under it are given back to the OS (they are never read again), so resident
// memory stays about one model during the repack too, not two.
constexpr uint64_t kRepackSlice = 2u << 20;

void repack_weights(Model& m, bool release_pages) {
  std::vector<Weight*> ws;
  for (LayerWeights& L : m.layers) {
    for (Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) {
      if (x8_supported(w->type, w->N, w->K)) ws.push_back(w);
    }
    // experts one by one (each slice is a matrix of its own), and the router
    for (std::vector<Weight>* ex : {&L.gate_exps, &L.up_exps, &L.down_exps}) {
      for (Weight& w : *ex) {
        if (x8_supported(w.type, w.N, w.K)) ws.push_back(&w);
      }
    }
    if (L.ffn_gate_inp.data && x8_supported(L.ffn_gate_inp.type, L.ffn_gate_inp.N, L.ffn_gate_inp.K)) {
      ws.push_back(&L.ffn_gate_inp);
    }
  }
  const bool tied = m.output.data == m.tok_embd.data;
  if (x8_supported(m.output.type, m.output.N, m.output.K)) ws.push_back(&m.output);
  if (ws.empty()) return;
  struct Slice {
    size_t w;
    int64_t g0, g1;
  };
  std::vector<uint64_t> off(ws.size() + 1, 0);
  std::vector<Slice> slices;
  for (size_t i = 0; i < ws.size(); ++i) {
    const uint64_t rb = row_bytes(ws[i]->type, ws[i]->K), bytes = rb * (uint64_t)ws[i]->N;
    off[i + 1] = off[i] + (bytes + 63) / 64 * 64;
    // slices of whole sets (pack_x8)
    const int64_t S = x8_set_groups(ws[i]->type);
    const int64_t groups = ws[i]->N / 8, per = std::max<int64_t>(1, (int64_t)(kRepackSlice / (8 * rb * S))) * S;
    for (int64_t g = 0; g < groups; g += per) slices.push_back({i, g, std::min(groups, g + per)});
  }
  // Populated in one call where the OS offers it (Linux): page by page first-touch
  // faults cost more than the packing here. (Transparent huge pages were tried:
  // 2-4x slower first loads, from compaction.)
  void* raw = map_anonymous(off.back());
  if (!raw) throw std::bad_alloc();
  uint8_t* buf = static_cast<uint8_t*>(raw);
  m.x8_buf.p = buf;
  m.x8_buf.n = off.back();
  m.pool->run_chunks((int64_t)slices.size(), [&](int64_t c) {
    const Slice& sl = slices[c];
    const Weight& w = *ws[sl.w];
    pack_x8(w.type, w.data, w.N, w.K, buf + off[sl.w], sl.g0, sl.g1);
    if (release_pages) {   // the file's whole pages under this slice's rows
      const uint64_t rb8 = 8 * row_bytes(w.type, w.K);
      ll::release_pages(w.data + sl.g0 * rb8, (size_t)((sl.g1 - sl.g0) * rb8));
    }
  });
  for (size_t i = 0; i < ws.size(); ++i) {
    ws[i]->data = buf + off[i];
    ws[i]->x8 = true;
  }
  if (tied && m.output.x8) m.tok_embd = m.output;   // the lookup unpacks its rows (embed)
  m.n_x8 = (int32_t)ws.size();
  m.x8_bytes = off.back();
}

}  // namespace

Model::Model(const uint8_t* file_, uint64_t file_size_, const HParams& hp_,
             const std::map<std::string, TensorDesc>& tensors, int32_t n_threads, bool precise_, bool repack,
             bool release_pages)
    : hp(hp_), file(file_), file_size(file_size_), precise(precise_) {
  if (hp.arch == "llama") {
    arch = Arch::llama;
  } else if (hp.arch == "gemma3") {
    arch = Arch::gemma3;
  } else if (hp.arch == "qwen2") {
    arch = Arch::qwen2;
  } else if (hp.arch == "phi3") {
    arch = Arch::phi3;
  } else if (hp.arch == "gemma2") {
    arch = Arch::gemma2;
  } else if (hp.arch == "qwen3") {
    arch = Arch::qwen3;
  } else if (hp.arch == "qwen3moe") {
    arch = Arch::qwen3moe;
  } else {
    fail("architecture '" + hp.arch + "' is not supported (supported: llama, gemma3, qwen2, phi3, gemma2, "
         "qwen3, qwen3moe)");
  }
  if (arch == Arch::qwen3moe && hp.n_expert == 0) fail("a qwen3moe model needs n_expert > 0");
  if (arch != Arch::llama && arch != Arch::qwen3moe && hp.n_expert > 0) {
    fail("architecture '" + hp.arch + "' has no mixture-of-experts graph (n_expert must be 0)");
  }
  check_hparams(hp);
  if (n_threads <= 0) fail("n_threads must be positive, got " + std::to_string(n_threads));
  const int64_t E = hp.n_embd, Q = (int64_t)hp.n_head * hp.head_dim;
  const int64_t KD = (int64_t)hp.n_head_kv * hp.head_dim, VD = (int64_t)hp.n_head_kv * hp.head_dim_v;
  const int64_t AO = (int64_t)hp.n_head * hp.head_dim_v;
  tok_embd = bind_weight(*this, tensors, "token_embd.weight", E, hp.n_vocab, false);
  output_norm = bind_weight(*this, tensors, "output_norm.weight", E, 1, true);
  output = tensors.count("output.weight") ? bind_weight(*this, tensors, "output.weight", E, hp.n_vocab, false)
                                          : tok_embd;
  if (!hp.rope_factors.empty()) {
    rope_freqs = bind_weight(*this, tensors, hp.rope_factors, hp.n_rot / 2, 1, true);
  }
  // an optional F32 bias vector of n values
  auto bias = [&](const std::string& name, int64_t n) -> const float* {
    if (!tensors.count(name)) return nullptr;
    return reinterpret_cast<const float*>(bind_weight(*this, tensors, name, n, 1, true).data);
  };
  const bool gemma = arch == Arch::gemma3;
  const bool post_norms = gemma || arch == Arch::gemma2;
  const bool qk_norm = gemma || arch == Arch::qwen3 || arch == Arch::qwen3moe;
  const int64_t X = hp.n_expert;
  layers.resize(hp.n_layer);
  for (int32_t il = 0; il < hp.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights& L = layers[il];
    L.attn_norm = bind_weight(*this, tensors, p + "attn_norm.weight", E, 1, true);
    // Q, K, V: separate, or (phi3 files) fused into one matrix of Q + KD + VD rows,
    // which become three views (each then repacked like a matrix of its own)
    if (arch == Arch::phi3 && tensors.count(p + "attn_qkv.weight")) {
      const std::vector<Weight> qkv =
          split_rows(bind_weight(*this, tensors, p + "attn_qkv.weight", E, Q + KD + VD, false), {Q, KD, VD});
      L.wq = qkv[0];
      L.wk = qkv[1];
      L.wv = qkv[2];
      L.fused_qkv = true;
    } else {
      L.wq = bind_weight(*this, tensors, p + "attn_q.weight", E, Q, false);
      L.wk = bind_weight(*this, tensors, p + "attn_k.weight", E, KD, false);
      L.wv = bind_weight(*this, tensors, p + "attn_v.weight", E, VD, false);
    }
    if (arch == Arch::qwen2) {   // the families whose graphs add Q/K/V biases
      L.bq = bias(p + "attn_q.bias", Q);
      L.bk = bias(p + "attn_k.bias", KD);
      L.bv = bias(p + "attn_v.bias", VD);
    }
    L.wo = bind_weight(*this, tensors, p + "attn_output.weight", AO, E, false);
    L.ffn_norm = bind_weight(*this, tensors, p + "ffn_norm.weight", E, 1, true);
    if (X > 0) {
      const int64_t F = hp.n_ff_exp;
      L.ffn_gate_inp = bind_weight(*this, tensors, p + "ffn_gate_inp.weight", E, X, false);
      L.gate_exps = split_experts(bind_weight(*this, tensors, p + "ffn_gate_exps.weight", E, F, false, X), X);
      L.up_exps = split_experts(bind_weight(*this, tensors, p + "ffn_up_exps.weight", E, F, false, X), X);
      L.down_exps = split_experts(bind_weight(*this, tensors, p + "ffn_down_exps.weight", F, E, false, X), X);
    } else {
      if (arch == Arch::phi3) {    // gate and up rows in one matrix: two views
        const int64_t F = hp.n_ff;
        const std::vector<Weight> gu =
            split_rows(bind_weight(*this, tensors, p + "ffn_up.weight", E, 2 * F, false), {F, F});
        L.ffn_gate = gu[0];
        L.ffn_up = gu[1];
        L.fused_gate_up = true;
      } else {
        L.ffn_gate = bind_weight(*this, tensors, p + "ffn_gate.weight", E, hp.n_ff, false);
        L.ffn_up = bind_weight(*this, tensors, p + "ffn_up.weight", E, hp.n_ff, false);
      }
      L.ffn_down = bind_weight(*this, tensors, p + "ffn_down.weight", hp.n_ff, E, false);
    }
    if (qk_norm) {
      L.q_norm = bind_weight(*this, tensors, p + "attn_q_norm.weight", hp.head_dim, 1, true);
      L.k_norm = bind_weight(*this, tensors, p + "attn_k_norm.weight", hp.head_dim, 1, true);
    }
    if (post_norms) {
      L.post_attn_norm = bind_weight(*this, tensors, p + "post_attention_norm.weight", E, 1, true);
      L.post_ffn_norm = bind_weight(*this, tensors, p + "post_ffw_norm.weight", E, 1, true);
    }
    L.sliding = hp.sliding_window > 0 && il % hp.swa_pattern < hp.swa_pattern - 1;
    L.rope_base = L.sliding ? hp.rope_base_swa : hp.rope_base;
    L.rope_freq_scale = L.sliding ? hp.rope_freq_scale_swa : hp.rope_freq_scale;
    L.rope_factors = rope_freqs.data ? reinterpret_cast<const float*>(rope_freqs.data) : nullptr;
  }
  pool = std::make_unique<ThreadPool>(n_threads);
  if (repack) repack_weights(*this, release_pages);
}

// --- validation --------------------------------------------------------------------
void validate_batch(const Model& m, const KVCache& kv, const Batch& b) {
  const HParams& hp = m.hp;
  if (kv.n_layer != hp.n_layer || kv.n_head_kv != hp.n_head_kv || kv.head_dim != hp.head_dim ||
      kv.head_dim_v != hp.head_dim_v) {
    fail("the KV cache was made for a different model");
  }
  if (b.n_tokens <= 0) fail("a step needs at least one token");
  if (b.n_seqs <= 0 || b.max_blocks <= 0) fail("block_tables must have at least one row and one column");
  const int64_t max_pos = (int64_t)b.max_blocks * kv.block_size;
  std::vector<int32_t> top(b.n_seqs, -1);   // highest position each sequence reaches
  for (int32_t t = 0; t < b.n_tokens; ++t) {
    const int32_t tok = b.tokens[t], pos = b.positions[t], seq = b.seq_ids[t];
    if (tok < 0 || tok >= hp.n_vocab) {
      fail("token id " + std::to_string(tok) + " at index " + std::to_string(t) +
           " is out of range [0, " + std::to_string(hp.n_vocab) + ")");
    }
    if (seq < 0 || seq >= b.n_seqs) {
      fail("seq_id " + std::to_string(seq) + " at index " + std::to_string(t) +
           " has no row in block_tables (" + std::to_string(b.n_seqs) + " rows)");
    }
    if (pos < 0 || pos >= max_pos) {
      fail("position " + std::to_string(pos) + " at index " + std::to_string(t) +
           " is outside the block table's " + std::to_string(max_pos) + " positions");
    }
    top[seq] = std::max(top[seq], pos);
  }
  for (int32_t s = 0; s < b.n_seqs; ++s) {
    if (top[s] < 0) continue;
    const int32_t* row = b.block_tables + (int64_t)s * b.max_blocks;
    for (int32_t j = 0; j <= top[s] / kv.block_size; ++j) {
      if (row[j] < 0 || row[j] >= kv.n_blocks) {
        fail("block_tables[" + std::to_string(s) + ", " + std::to_string(j) + "] = " +
             std::to_string(row[j]) + " is not a block id in [0, " + std::to_string(kv.n_blocks) + ")");
      }
    }
  }
  for (int32_t r = 0; r < b.n_logit_rows; ++r) {
    if (b.logit_rows[r] < 0 || b.logit_rows[r] >= b.n_tokens) {
      fail("logit row " + std::to_string(b.logit_rows[r]) + " is not a token index in [0, " +
           std::to_string(b.n_tokens) + ")");
    }
  }
}

// --- shared graph pieces ----------------------------------------------------------------

namespace {
// The activation block family a weight type's dot product uses (see kernels.h):
// weights in one family can share one quantization of X.
int32_t act_family(int32_t weight_type) {
  switch (weight_type) {
    case TYPE_F32: case TYPE_F16: case TYPE_BF16: return TYPE_F32;
    case TYPE_Q2_K: case TYPE_Q3_K: case TYPE_Q4_K: case TYPE_Q5_K: case TYPE_Q6_K:
    case TYPE_IQ4_XS: return TYPE_Q8_K;
    default: return TYPE_Q8_0;
  }
}
}  // namespace

// Rows of X at or below which the activations are quantized on the calling thread:
// a decode step saves a pool dispatch per matmul (the same function either way).
constexpr int64_t kInlineQuantRows = 8;

namespace {
// ActStats: X [n, K] (row stride K) entering weights Ws[0..count) (one K).
void collect_act_stats(ActStats& st, const Weight* const* Ws, int32_t count, const float* X, int64_t n) {
  for (int32_t i = 0; i < count; ++i) {
    auto it = st.slot.find(Ws[i]);
    if (it == st.slot.end()) continue;
    const int64_t K = Ws[i]->K;
    double* acc = st.sum2[it->second.slot].data() + it->second.mat * K;   // [K]
    for (int64_t r = 0; r < n; ++r) {
      const float* x = X + r * K;
      for (int64_t j = 0; j < K; ++j) acc[j] += (double)x[j] * x[j];
    }
    st.count[it->second.slot][it->second.mat] += n;
  }
}
}  // namespace

void enable_act_stats(Model& m) {
  auto st = std::make_unique<ActStats>();
  // one slot per tensor: ws[0..n_mat) are its matrices (the experts of a 3-D tensor)
  auto add = [&](size_t il, const char* role, const Weight* ws, size_t n_mat) {
    if (n_mat == 0 || !ws[0].data) return;
    const int32_t slot = (int32_t)st->names.size();
    for (size_t e = 0; e < n_mat; ++e) st->slot[&ws[e]] = ActStats::Target{slot, (int32_t)e};
    st->names.push_back("blk." + std::to_string(il) + "." + role + ".weight");
    st->K.push_back(ws[0].K);
    st->sum2.emplace_back(n_mat * ws[0].K, 0.0);
    st->count.emplace_back(n_mat, 0);
  };
  for (size_t il = 0; il < m.layers.size(); ++il) {
    LayerWeights& L = m.layers[il];
    // A fused tensor's views share one input (linear_shared): only its first view
    // collects, under the fused tensor's name, so each row counts once for all K columns.
    if (L.fused_qkv) {
      add(il, "attn_qkv", &L.wq, 1);
    } else {
      add(il, "attn_q", &L.wq, 1);
      add(il, "attn_k", &L.wk, 1);
      add(il, "attn_v", &L.wv, 1);
    }
    add(il, "attn_output", &L.wo, 1);
    if (L.fused_gate_up) {
      add(il, "ffn_up", &L.ffn_gate, 1);
    } else {
      add(il, "ffn_gate", &L.ffn_gate, 1);
      add(il, "ffn_up", &L.ffn_up, 1);
    }
    add(il, "ffn_down", &L.ffn_down, 1);
    add(il, "ffn_gate_inp", &L.ffn_gate_inp, 1);
    add(il, "ffn_gate_exps", L.gate_exps.data(), L.gate_exps.size());
    add(il, "ffn_up_exps", L.up_exps.data(), L.up_exps.size());
    add(il, "ffn_down_exps", L.down_exps.data(), L.down_exps.size());
  }
  std::lock_guard<std::mutex> lock(m.busy);
  m.act_stats = std::move(st);
}

void disable_act_stats(Model& m) {
  std::lock_guard<std::mutex> lock(m.busy);
  m.act_stats.reset();
}

void linear_shared(Model& m, const Weight* const* Ws, float* const* Ys, int32_t count,
                   const float* X, int64_t n) {
  if (m.act_stats) collect_act_stats(*m.act_stats, Ws, count, X, n);
  thread_local QuantizedActs xq;
  // Consecutive weights of one activation family share one quantization of X
  // and one pool job.
  // precise mode: one float32 copy of X serves every weight type
  auto family_of = [&](const Weight& w) { return m.precise ? TYPE_F32 : act_family(w.type); };
  for (int32_t i = 0; i < count;) {
    const Weight& W = *Ws[i];
    const int32_t family = family_of(W);
    if (n <= kInlineQuantRows) {
      xq.prepare(W.type, n, W.K, m.precise);
      quantize_acts_rows(X, W.K, xq, 0, n);
    } else {
      quantize_acts(*m.pool, W.type, X, W.K, n, W.K, xq, m.precise);
    }
    MatmulTask tasks[8];
    int32_t nt = 0;
    for (; i < count && nt < 8 && family_of(*Ws[i]) == family; ++i, ++nt) {
      tasks[nt] = MatmulTask{Ws[i]->type, Ws[i]->data, Ws[i]->N, Ys[i], Ws[i]->N, Ws[i]->x8};
    }
    matmul_prepared_many(*m.pool, tasks, nt, xq);
  }
}

namespace {
// Y[r, :] += bias for every row r of Y [n, w].
void add_bias_rows(Model& m, float* Y, const float* bias, int64_t n, int64_t w) {
  parallel_for(m, n, w, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t i = 0; i < w; ++i) Y[r * w + i] += bias[i];
    }
  });
}
}  // namespace

void project_qkv(Model& m, const LayerWeights& L, int64_t n) {
  Scratch& s = m.s;
  const int64_t Q = (int64_t)m.hp.n_head * m.hp.head_dim, KD = (int64_t)m.hp.n_head_kv * m.hp.head_dim;
  const int64_t VD = (int64_t)m.hp.n_head_kv * m.hp.head_dim_v;
  const Weight* ws[3] = {&L.wq, &L.wk, &L.wv};
  float* ys[3] = {s.q.data(), s.k.data(), s.v.data()};
  linear_shared(m, ws, ys, 3, s.xb.data(), n);
  if (L.bq) add_bias_rows(m, s.q.data(), L.bq, n, Q);
  if (L.bk) add_bias_rows(m, s.k.data(), L.bk, n, KD);
  if (L.bv) add_bias_rows(m, s.v.data(), L.bv, n, VD);
}

void project_gate_up(Model& m, const LayerWeights& L, int64_t n) {
  Scratch& s = m.s;
  const Weight* ws[2] = {&L.ffn_gate, &L.ffn_up};
  float* ys[2] = {s.gate.data(), s.up.data()};
  linear_shared(m, ws, ys, 2, s.xb.data(), n);
}

void linear(Model& m, const Weight& W, const float* X, int64_t n, float* Y) {
  const Weight* ws[1] = {&W};
  float* ys[1] = {Y};
  linear_shared(m, ws, ys, 1, X, n);
}

void rmsnorm_rows(Model& m, const float* X, const Weight& w, float* Y, int64_t n, int64_t d) {
  const float* wf = reinterpret_cast<const float*>(w.data);
  const float eps = m.hp.eps;
  parallel_for(m, n, 2 * d, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) rmsnorm_row(X + r * d, wf, Y + r * d, d, eps);
  });
}

void rmsnorm_heads(Model& m, float* X, const Weight& w, int64_t n, int64_t n_heads, int64_t d) {
  rmsnorm_rows(m, X, w, X, n * n_heads, d);
}

void rope_qk(Model& m, const Batch& b, const LayerWeights& L) {
  const HParams& hp = m.hp;
  Scratch& s = m.s;
  const int64_t n_rot = hp.n_rot, hd = hp.head_dim;
  parallel_for(m, b.n_tokens, n_rot * 16 + (hp.n_head + hp.n_head_kv) * n_rot, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* cs = s.rope_cs.data() + t * n_rot;
      rope_angles(b.positions[t], L.rope_base, L.rope_freq_scale, L.rope_factors, n_rot, cs);
      if (hp.rope_attn_factor != 1.0f) {
        for (int64_t i = 0; i < n_rot; ++i) cs[i] *= hp.rope_attn_factor;
      }
      float* q = s.q.data() + t * hp.n_head * hd;
      for (int32_t h = 0; h < hp.n_head; ++h) rope_apply(q + h * hd, cs, n_rot, hp.rope_neox);
      float* k = s.k.data() + t * hp.n_head_kv * hd;
      for (int32_t h = 0; h < hp.n_head_kv; ++h) rope_apply(k + h * hd, cs, n_rot, hp.rope_neox);
    }
  });
}

void attention_step(Model& m, KVCache& kv, const Batch& b, int32_t il, int32_t window) {
  const HParams& hp = m.hp;
  Scratch& s = m.s;
  const int32_t bs = kv.block_size;
  const int64_t kd = (int64_t)hp.n_head_kv * hp.head_dim, vd = (int64_t)hp.n_head_kv * hp.head_dim_v;
  for (int32_t t = 0; t < b.n_tokens; ++t) {   // K/V of every token into its block
    const int32_t pos = b.positions[t];
    const int32_t blk = b.block_tables[(int64_t)b.seq_ids[t] * b.max_blocks + pos / bs];
    kv.write(il, blk, pos % bs, s.k.data() + t * kd, s.v.data() + t * vd);
  }
  AttnStep st;
  st.kv = KVLayerView{kv.k_at(il, 0, 0), kv.v_at(il, 0, 0), bs, kv.n_head_kv, kv.head_dim,
                      kv.head_dim_v, kv.type == KVType::f16};
  st.n_tokens = b.n_tokens;
  st.n_head = hp.n_head;
  st.q = s.q.data();
  st.out = s.att.data();
  st.positions = b.positions;
  st.seq_ids = b.seq_ids;
  st.block_tables = b.block_tables;
  st.max_blocks = b.max_blocks;
  st.window = window;
  st.scale = hp.attn_scale;
  st.softcap = hp.attn_softcap;
  const std::vector<AttnTask> tasks = plan_attention(st, kAttnTileTokens, 2 * m.pool->size());
  int32_t longest = 0;
  for (int32_t t = 0; t < b.n_tokens; ++t) longest = std::max(longest, b.positions[t] + 1);
  const int64_t span = window > 0 ? std::min(window, longest) : longest;
  const int64_t cost = (int64_t)kAttnTileTokens * (hp.n_head / hp.n_head_kv) * span *
                       (hp.head_dim + hp.head_dim_v);
  parallel_for(m, (int64_t)tasks.size(), cost, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) run_attention_task(st, tasks[j]);
  });
}

void parallel_for(Model& m, int64_t n, int64_t cost_per_item,
                  const std::function<void(int64_t, int64_t)>& fn) {
  if (n * cost_per_item < kInlineWork || m.pool->size() == 1) {
    fn(0, n);
    return;
  }
  // Dynamic chunks (a few per thread), not a static split: a worker the OS has
  // descheduled is then not waited for unless it already holds a chunk.
  const int64_t n_chunks = std::min<int64_t>(n, 4 * (int64_t)m.pool->size());
  m.pool->run_chunks(n_chunks, [&](int64_t c) {
    const int64_t i0 = n * c / n_chunks, i1 = n * (c + 1) / n_chunks;
    if (i0 < i1) fn(i0, i1);
  });
}

void add_into(Model& m, float* X, const float* Y, int64_t n) {
  parallel_for(m, n, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) X[i] += Y[i];
  });
}

void gated_activation(Model& m, float* gate, const float* up, int64_t n, bool gelu) {
  const AttnFns& f = attn_fns();
  parallel_for(m, n, 16, [&](int64_t i0, int64_t i1) {
    if (gelu) {
      f.gelu_mul(gate + i0, up + i0, i1 - i0);
    } else {
      f.silu_mul(gate + i0, up + i0, i1 - i0);
    }
  });
}

// --- the step ----------------------------------------------------------------------------
namespace {

void size_scratch(Model& m, const Batch& b) {
  const HParams& hp = m.hp;
  Scratch& s = m.s;
  const int64_t n = b.n_tokens;
  s.x.resize(n * hp.n_embd);
  s.xb.resize(n * hp.n_embd);
  s.q.resize(n * hp.n_head * hp.head_dim);
  s.k.resize(n * hp.n_head_kv * hp.head_dim);
  s.v.resize(n * hp.n_head_kv * hp.head_dim_v);
  s.att.resize(n * hp.n_head * hp.head_dim_v);
  s.proj.resize(n * hp.n_embd);
  const int64_t n_ff_dense = hp.n_expert > 0 ? 0 : hp.n_ff;   // experts use s.moe
  s.gate.resize(n * n_ff_dense);
  s.up.resize(n * n_ff_dense);
  if (hp.n_expert > 0) {
    const int64_t X = hp.n_expert, K = hp.n_expert_used;
    s.moe.router.resize(n * X);
    s.moe.sel.resize(n * K);
    s.moe.w.resize(n * K);
    s.moe.y.resize(n * K * hp.n_embd);
    s.moe.rows.resize(n * K);
    s.moe.xe.resize(n * hp.n_embd);   // a token goes to an expert at most once
    s.moe.ge.resize(std::max(n, K) * hp.n_ff_exp);   // decode: one row per chosen expert
    s.moe.ue.resize(std::max(n, K) * hp.n_ff_exp);
  }
  s.rope_cs.resize(n * hp.n_rot);
  s.out_x.resize((int64_t)b.n_logit_rows * hp.n_embd);
}

void embed(Model& m, const Batch& b) {
  const int64_t E = m.hp.n_embd;
  const size_t rb = row_bytes(m.tok_embd.type, E);
  const float scale = m.hp.embd_scale;
  parallel_for(m, b.n_tokens, 4 * E, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* x = m.s.x.data() + t * E;
      const uint8_t* row = m.tok_embd.data + (size_t)b.tokens[t] * rb;
      thread_local std::vector<uint8_t> unpacked;   // one ggml row from the x8 layout
      if (m.tok_embd.x8) {
        unpacked.resize(rb);
        unpack_x8_rows(m.tok_embd.type, m.tok_embd.data, m.tok_embd.N, E, b.tokens[t], b.tokens[t] + 1, unpacked.data());
        row = unpacked.data();
      }
      dequantize_row(m.tok_embd.type, row, x, E);
      if (scale != 1.0f) for (int64_t i = 0; i < E; ++i) x[i] *= scale;
    }
  });
}

void output_logits(Model& m, const Batch& b, float* logits) {
  const int64_t E = m.hp.n_embd, r = b.n_logit_rows;
  if (r == 0) return;
  for (int64_t i = 0; i < r; ++i) {
    std::memcpy(m.s.out_x.data() + i * E, m.s.x.data() + (int64_t)b.logit_rows[i] * E, E * sizeof(float));
  }
  rmsnorm_rows(m, m.s.out_x.data(), m.output_norm, m.s.out_x.data(), r, E);
  linear(m, m.output, m.s.out_x.data(), r, logits);
  const float cap = m.hp.final_softcap;
  if (cap > 0.0f) {
    const int64_t total = r * m.hp.n_vocab;
    for (int64_t i = 0; i < total; ++i) logits[i] = std::tanh(logits[i] / cap) * cap;
  }
}

}  // namespace

void forward(Model& m, KVCache& kv, const Batch& b, float* logits) {
  std::lock_guard<std::mutex> lock(m.busy);
  validate_batch(m, kv, b);
  size_scratch(m, b);
  embed(m, b);
  for (int32_t il = 0; il < m.hp.n_layer; ++il) {
    switch (m.arch) {
      case Arch::llama: llama_layer(m, kv, b, il); break;
      case Arch::gemma3: gemma3_layer(m, kv, b, il); break;
      case Arch::qwen2: qwen2_layer(m, kv, b, il); break;
      case Arch::phi3: phi3_layer(m, kv, b, il); break;
      case Arch::gemma2: gemma2_layer(m, kv, b, il); break;
      case Arch::qwen3: case Arch::qwen3moe: qwen3_layer(m, kv, b, il); break;
    }
  }
  output_logits(m, b, logits);
}

}  // namespace ll
