// model.h - a loaded model: hyperparameters, weight views into the mmapped GGUF
// file, scratch buffers, and the forward pass of one engine step.
//
// The Python loader parses and validates the file and hands the core the base
// pointer of the mapping plus (offset, type, shape) of every tensor; the core
// checks each tensor it uses against the expected shape and the mapping's size.
// A step is a batch of n tokens that may belong to several sequences; each token
// writes its K/V into its sequence's KV block at its position and attends to its
// own sequence's positions <= its own (and > pos - window on sliding layers).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels.h"
#include "kv_cache.h"
#include "threadpool.h"

namespace ll {

enum class Arch : int32_t { llama = 0, gemma3 = 1, qwen2 = 2, phi3 = 3, gemma2 = 4, qwen3 = 5,
                            qwen3moe = 6 };

struct HParams {
  std::string arch;          // "llama", "gemma3", "qwen2", "phi3", "gemma2", "qwen3" or "qwen3moe"
  int32_t n_vocab = 0, n_ctx_train = 0, n_embd = 0, n_layer = 0;
  int32_t n_head = 0, n_head_kv = 0, head_dim = 0, head_dim_v = 0, n_rot = 0, n_ff = 0;
  float eps = 1e-5f;
  float rope_base = 10000.0f, rope_base_swa = 10000.0f;
  float rope_freq_scale = 1.0f;   // global layers: positions scaled by this (linear scaling)
  float rope_freq_scale_swa = 1.0f;   // the same for sliding-window layers
  float rope_attn_factor = 1.0f;  // multiplies RoPE's cos and sin (LongRoPE's attention factor)
  std::string rope_factors;       // tensor of per-pair frequency divisors ("" for none)
  bool rope_neox = false;
  int32_t sliding_window = 0;   // 0: no sliding-window layers
  int32_t swa_pattern = 1;      // layer il slides when il % swa_pattern < swa_pattern - 1
  float attn_scale = 0.0f;      // multiplies q.k
  float embd_scale = 1.0f;      // multiplies the token embeddings (gemma: sqrt(n_embd))
  float final_softcap = 0.0f;   // 0: none
  float attn_softcap = 0.0f;    // attention scores become cap * tanh(score / cap); 0: none
  // Mixture of experts (qwen3moe; llama files with experts): 0 experts: a dense FFN.
  int32_t n_expert = 0, n_expert_used = 0;   // experts per layer, experts per token (top-k)
  int32_t n_ff_exp = 0;                      // rows of one expert's gate and up
};

// Where a tensor lies in the file (GGUF order: ne0 = row length, ne1 = rows,
// ne2 = matrices: the experts of a 3-D expert tensor; 1 for a matrix).
struct TensorDesc {
  uint64_t offset = 0;
  int32_t type = -1;
  int64_t ne0 = 0, ne1 = 1, ne2 = 1;
};

// A weight as the kernels see it: N rows of K values in the ggml layout, or (x8)
// in the x8 layout the model repacked it into at load (kernels.h).
struct Weight {
  const uint8_t* data = nullptr;
  int32_t type = -1;
  int64_t K = 0, N = 0;
  bool x8 = false;
};

struct LayerWeights {
  Weight attn_norm, wq, wk, wv, wo;         // norms are F32 [n_embd] (N = 1)
  bool fused_qkv = false;                    // wq, wk, wv are row views of one attn_qkv (phi3)
  const float* bq = nullptr;                 // optional Q/K/V biases (qwen2), F32
  const float* bk = nullptr;
  const float* bv = nullptr;
  Weight q_norm, k_norm, post_attn_norm;     // q/k norms: gemma3, qwen3*; post: gemma3
  Weight ffn_norm, ffn_gate, ffn_up, ffn_down, post_ffn_norm;
  bool fused_gate_up = false;                // ffn_gate, ffn_up are row views of one ffn_up (phi3)
  bool sliding = false;
  float rope_base = 10000.0f;
  float rope_freq_scale = 1.0f;
  const float* rope_factors = nullptr;   // [n_rot/2] or null
  // Mixture of experts (moe.cpp): the router ffn_gate_inp [n_expert rows of n_embd],
  // and one view per expert into the 3-D tensors ffn_{gate,up,down}_exps (expert e
  // starts e * rows * row_bytes into the tensor; repacked per expert like any weight).
  Weight ffn_gate_inp;
  std::vector<Weight> gate_exps, up_exps, down_exps;
};

// The mixture-of-experts FFN's buffers (moe.cpp), sized to the step.
struct MoEScratch {
  std::vector<float> router;     // [n, n_expert]        router logits, then probabilities
  std::vector<int32_t> sel;      // [n, n_expert_used]   selected experts, best first
  std::vector<float> w;          // [n, n_expert_used]   their (normalised) weights
  std::vector<float> y;          // [n, n_expert_used, n_embd]  each selected expert's output
  std::vector<int32_t> rows;     // [n * n_expert_used]  (token, slot) indices grouped by expert
  std::vector<float> xe;         // [c, n_embd]          the tokens routed to one expert
  std::vector<float> ge, ue;     // [c, n_ff_exp]        their gate and up (decode: [k, n_ff_exp])
};

// Per-step activations, sized to the batch (capacity reused between steps).
struct Scratch {
  std::vector<float> x;      // [n, n_embd]               residual stream
  std::vector<float> xb;     // [n, n_embd]               normed input of a sub-block
  std::vector<float> q;      // [n, n_head * head_dim]
  std::vector<float> k;      // [n, n_head_kv * head_dim]
  std::vector<float> v;      // [n, n_head_kv * head_dim_v]
  std::vector<float> att;    // [n, n_head * head_dim_v]   attention output per head
  std::vector<float> proj;   // [n, n_embd]               output of wo / ffn_down
  std::vector<float> gate;   // [n, n_ff]
  std::vector<float> up;     // [n, n_ff]
  std::vector<float> rope_cs;      // [n, n_rot]  cos/sin for the current RoPE base
  std::vector<float> out_x;        // [r, n_embd]  rows that need logits
  MoEScratch moe;
};

// One engine step. Arrays are owned by the caller.
struct Batch {
  int32_t n_tokens = 0;
  const int32_t* tokens = nullptr;        // [n_tokens]
  const int32_t* positions = nullptr;     // [n_tokens]
  const int32_t* seq_ids = nullptr;       // [n_tokens]  rows of block_tables
  const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks]
  int32_t n_seqs = 0, max_blocks = 0;
  const int32_t* logit_rows = nullptr;    // [n_logit_rows] indices into the tokens
  int32_t n_logit_rows = 0;
};

// Activation statistics for importance matrices (`llamalite imatrix`): while a
// Model's act_stats is set, every matmul of a collected weight adds, for each
// input column j, the sum over the batch rows of X[row, j]^2 (X: the float
// activations entering the matmul) and the number of rows, as llama-imatrix does.
// A 3-D expert tensor (ffn_{gate,up,down}_exps) is one slot of n_mat = n_expert
// matrices: each expert's matmuls (moe.cpp) add to that expert's part only, over
// the (token, slot) rows routed to it; an expert no token chose keeps zeros.
// A fused 2-D tensor (phi3's attn_qkv, ffn_up) is one slot collected through its
// first row view only: its views share one input, which counts once per row.
struct ActStats {
  struct Target {
    int32_t slot = 0;   // index below
    int32_t mat = 0;    // expert of a 3-D tensor; 0 for a 2-D weight
  };
  std::map<const Weight*, Target> slot;     // collected weight (or expert view) -> its part
  std::vector<std::string> names;           // [slots] tensor names ("blk.3.attn_q.weight")
  std::vector<int64_t> K;                   // [slots] input columns per matrix
  std::vector<std::vector<double>> sum2;    // [slots][n_mat * K], matrix-major
  std::vector<std::vector<int64_t>> count;  // [slots][n_mat] activation rows seen
};

struct Model {
  Arch arch = Arch::llama;
  HParams hp;
  const uint8_t* file = nullptr;   // the mmapped GGUF file (owned by Python)
  uint64_t file_size = 0;
  Weight tok_embd, output_norm, output;
  Weight rope_freqs;               // optional F32 [n_rot/2]: per-pair frequency divisors
                                   // (Llama 3's rope_freqs, Phi-3's LongRoPE short or long)
  std::vector<LayerWeights> layers;
  std::unique_ptr<ThreadPool> pool;
  // The matmul weights repacked into the x8 layout at load (layers and output;
  // the file's pages of those tensors are released): n_x8 weights, x8_bytes
  // bytes in x8_buf. A tied tok_embd then points there too (embed unpacks rows).
  struct X8Buffer {   // anonymous memory, unmapped with the model
    uint8_t* p = nullptr;
    size_t n = 0;
    X8Buffer() = default;
    X8Buffer(const X8Buffer&) = delete;
    X8Buffer& operator=(const X8Buffer&) = delete;
    ~X8Buffer();
  };
  X8Buffer x8_buf;
  int32_t n_x8 = 0;
  uint64_t x8_bytes = 0;
  // Precise mode: every matmul keeps its activations float32 (QuantizedActs'
  // precise mode) instead of rounding them to 8-bit blocks. Slower; for checking accuracy.
  bool precise = false;
  Scratch s;
  std::mutex busy;                 // one step at a time per model
  std::unique_ptr<ActStats> act_stats;   // null (no statistics, no cost) unless enabled

  // Binds every tensor the architecture needs; throws std::invalid_argument naming
  // a missing tensor, a wrong shape, an unknown type or bytes beyond the file.
  // repack: put the matmul weights of the 32-value types into the x8 layout
  // (faster kernels; batch invariant like the ggml layout). release_pages: `file`
  // is a file mapping, and its pages of repacked tensors are dropped (platform.h),
  // so resident memory does not hold both copies; never for anonymous memory.
  Model(const uint8_t* file, uint64_t file_size, const HParams& hp,
        const std::map<std::string, TensorDesc>& tensors, int32_t n_threads, bool precise = false,
        bool repack = true, bool release_pages = false);
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
};

// Starts collecting ActStats for every layer matmul weight (the blk.* tensors, the
// experts included, as llama-imatrix collects by default), from zero;
// disable_act_stats drops them.
void enable_act_stats(Model& m);
void disable_act_stats(Model& m);

// Throws std::invalid_argument describing the first bad input of a step.
void validate_batch(const Model& m, const KVCache& kv, const Batch& b);

// Runs one step: logits [b.n_logit_rows, n_vocab] for the requested rows.
// Validates the batch first.
void forward(Model& m, KVCache& kv, const Batch& b, float* logits);

// --- shared pieces of the per-architecture graphs (model.cpp) ------------------
// Y[n, W.N] = X[n, W.K] . W^T on the model's pool.
void linear(Model& m, const Weight& W, const float* X, int64_t n, float* Y);
// Ys[i][n, Ws[i].N] = X . Ws[i]^T for weights of the same K (Q, K, V; gate, up):
// X is quantized once per activation family. Bit-identical to linear() each.
void linear_shared(Model& m, const Weight* const* Ws, float* const* Ys, int32_t count,
                   const float* X, int64_t n);
// s.q [n, n_head * hd], s.k [n, n_head_kv * hd], s.v [n, n_head_kv * hdv] = s.xb . Wq, Wk, Wv^T
// (linear_shared: one activation quantization, one pool job; for a fused attn_qkv the
// three are its row views), plus the biases where the layer has them.
void project_qkv(Model& m, const LayerWeights& L, int64_t n);
// s.gate, s.up [n, n_ff] = s.xb . Wgate^T, Wup^T (linear_shared; for a fused ffn_up the
// two are its row views: gate rows, then up rows).
void project_gate_up(Model& m, const LayerWeights& L, int64_t n);
// Row-wise RMSNorm of X [n, d] (row stride d) by F32 weight w into Y.
void rmsnorm_rows(Model& m, const float* X, const Weight& w, float* Y, int64_t n, int64_t d);
// Per-head RMSNorm in place: X [n, n_heads, d] with one F32 weight w [d].
void rmsnorm_heads(Model& m, float* X, const Weight& w, int64_t n, int64_t n_heads, int64_t d);
// RoPE on s.q and s.k at the batch's positions with the given base.
void rope_qk(Model& m, const Batch& b, const LayerWeights& L);
// Writes s.k / s.v into the cache, then s.att = attention of every token and head.
void attention_step(Model& m, KVCache& kv, const Batch& b, int32_t il, int32_t window);
// fn(i0, i1) over [0, n) split across the pool, or inline when n * cost_per_item is small.
void parallel_for(Model& m, int64_t n, int64_t cost_per_item,
                  const std::function<void(int64_t, int64_t)>& fn);
// X[i] += Y[i] for n values.
void add_into(Model& m, float* X, const float* Y, int64_t n);
// gate[i] = act(gate[i]) * up[i] for n values; act = gelu_tanh or silu.
void gated_activation(Model& m, float* gate, const float* up, int64_t n, bool gelu);

// The mixture-of-experts FFN (moe.cpp): s.proj [n, n_embd] from s.xb [n, n_embd].
void moe_ffn(Model& m, const LayerWeights& L, int64_t n);

// The per-layer graphs (arch_*.cpp): update s.x in place.
void llama_layer(Model& m, KVCache& kv, const Batch& b, int32_t il);
void gemma3_layer(Model& m, KVCache& kv, const Batch& b, int32_t il);
void qwen2_layer(Model& m, KVCache& kv, const Batch& b, int32_t il);
void phi3_layer(Model& m, KVCache& kv, const Batch& b, int32_t il);
void gemma2_layer(Model& m, KVCache& kv, const Batch& b, int32_t il);
void qwen3_layer(Model& m, KVCache& kv, const Batch& b, int32_t il);

}  // namespace ll
