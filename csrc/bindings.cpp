// bindings.cpp - the one pybind11 binding file: llamalite._core.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <limits>
#include <cstdint>
#include <algorithm>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"
#include "quantize.h"
#include "threadpool.h"

#include <climits>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gguf_scan.h"
#include "kv_cache.h"
#include "model.h"
#include "sampling.h"
#include "ops.h"
#include "ops_simd.h"

namespace py = pybind11;

// --- model ---
// _core.Model(buffer, hparams: dict, tensors: {name: (offset, type, ne0, ne1, ne2)}, n_threads,
//             precise=False)   precise: float32 activations in every matmul
// holds pointers into `buffer` (the mmapped file), kept alive with the Model.
// _core.KVCache(model, n_blocks, block_size, dtype='f16'|'f32') is the paged K/V pool.
// Model.forward(kv, tokens, positions, seq_ids, block_tables, logit_rows) runs one
// step with the GIL released and returns float32 logits [len(logit_rows), n_vocab].

using I32Array = py::array_t<int32_t, py::array::c_style>;

static ll::HParams hparams_from_dict(const py::dict& d) {
  ll::HParams hp;
  auto get = [&](const char* key) -> py::object {
    if (!d.contains(key)) throw py::value_error(std::string("hparams is missing '") + key + "'");
    return d[key];
  };
  hp.arch = get("arch").cast<std::string>();
  hp.n_vocab = get("n_vocab").cast<int32_t>();
  hp.n_ctx_train = get("n_ctx_train").cast<int32_t>();
  hp.n_embd = get("n_embd").cast<int32_t>();
  hp.n_layer = get("n_layer").cast<int32_t>();
  hp.n_head = get("n_head").cast<int32_t>();
  hp.n_head_kv = get("n_head_kv").cast<int32_t>();
  hp.head_dim = get("head_dim").cast<int32_t>();
  hp.head_dim_v = get("head_dim_v").cast<int32_t>();
  hp.n_rot = get("n_rot").cast<int32_t>();
  hp.n_ff = get("n_ff").cast<int32_t>();
  hp.eps = get("eps").cast<float>();
  hp.rope_base = get("rope_base").cast<float>();
  hp.rope_base_swa = get("rope_base_swa").cast<float>();
  hp.rope_freq_scale = get("rope_freq_scale").cast<float>();
  hp.rope_neox = get("rope_neox").cast<bool>();
  hp.sliding_window = get("sliding_window").cast<int32_t>();
  hp.swa_pattern = get("swa_pattern").cast<int32_t>();
  hp.attn_scale = get("attn_scale").cast<float>();
  hp.embd_scale = get("embd_scale").cast<float>();
  hp.final_softcap = get("final_softcap").cast<float>();
  hp.n_expert = get("n_expert").cast<int32_t>();
  hp.n_expert_used = get("n_expert_used").cast<int32_t>();
  hp.n_ff_exp = get("n_ff_exp").cast<int32_t>();
  hp.rope_freq_scale_swa = get("rope_freq_scale_swa").cast<float>();
  hp.rope_attn_factor = get("rope_attn_factor").cast<float>();
  hp.rope_factors = get("rope_factors").cast<std::string>();
  hp.attn_softcap = get("attn_softcap").cast<float>();
  return hp;
}

static std::unique_ptr<ll::Model> make_model(py::buffer buffer, const py::dict& hparams,
                                             const py::dict& tensors, int32_t n_threads, bool precise,
                                             bool repack, bool release_pages) {
  py::buffer_info info = buffer.request();
  if (info.ndim != 1 || info.itemsize != 1 || (info.shape[0] > 1 && info.strides[0] != 1))
    throw py::value_error("Model: expected the file as a contiguous 1-D byte buffer");
  std::map<std::string, ll::TensorDesc> descs;
  for (auto item : tensors) {
    auto t = item.second.cast<py::tuple>();
    if (t.size() != 5) throw py::value_error("Model: tensor entries are (offset, type, ne0, ne1, ne2)");
    descs[item.first.cast<std::string>()] = ll::TensorDesc{
        t[0].cast<uint64_t>(), t[1].cast<int32_t>(), t[2].cast<int64_t>(), t[3].cast<int64_t>(),
        t[4].cast<int64_t>()};
  }
  return std::make_unique<ll::Model>(static_cast<const uint8_t*>(info.ptr),
                                     static_cast<uint64_t>(info.shape[0]),
                                     hparams_from_dict(hparams), descs, n_threads, precise, repack,
                                     release_pages);
}

static int32_t checked_len(const I32Array& a, const char* name) {
  if (a.ndim() != 1) throw py::value_error(std::string(name) + " must be a 1-D int32 array");
  if (a.shape(0) > INT32_MAX) throw py::value_error(std::string(name) + " is too long");
  return static_cast<int32_t>(a.shape(0));
}

static py::array_t<float> model_forward(ll::Model& m, ll::KVCache& kv, const I32Array& tokens,
                                        const I32Array& positions, const I32Array& seq_ids,
                                        const I32Array& block_tables, const I32Array& logit_rows) {
  const int32_t n = checked_len(tokens, "tokens");
  if (checked_len(positions, "positions") != n || checked_len(seq_ids, "seq_ids") != n)
    throw py::value_error("tokens, positions and seq_ids must have the same length");
  if (block_tables.ndim() != 2) throw py::value_error("block_tables must be a 2-D int32 array");
  const int32_t r = checked_len(logit_rows, "logit_rows");
  ll::Batch b;
  b.n_tokens = n;
  b.tokens = tokens.data();
  b.positions = positions.data();
  b.seq_ids = seq_ids.data();
  b.block_tables = block_tables.data();
  b.n_seqs = static_cast<int32_t>(block_tables.shape(0));
  b.max_blocks = static_cast<int32_t>(block_tables.shape(1));
  b.logit_rows = logit_rows.data();
  b.n_logit_rows = r;
  ll::validate_batch(m, kv, b);   // before allocating the output
  py::array_t<float> logits({static_cast<py::ssize_t>(r), static_cast<py::ssize_t>(m.hp.n_vocab)});
  float* out = logits.mutable_data();
  {
    py::gil_scoped_release release;
    ll::forward(m, kv, b, out);
  }
  return logits;
}

// gated_activation(kind, x, up): kind "silu" or "gelu"; act(x) * up with the active
// ISA's kernel (for tests of the SIMD exp against numpy).
static py::array_t<float> gated_activation_py(const std::string& kind,
                                              py::array_t<float, py::array::c_style | py::array::forcecast> x,
                                              py::array_t<float, py::array::c_style | py::array::forcecast> up) {
  if (kind != "silu" && kind != "gelu") throw py::value_error("kind must be 'silu' or 'gelu'");
  if (x.ndim() != 1 || up.ndim() != 1 || x.shape(0) != up.shape(0))
    throw py::value_error("x and up must be 1-D arrays of the same length");
  py::array_t<float> out(x.shape(0));
  std::memcpy(out.mutable_data(), x.data(), sizeof(float) * (size_t)x.shape(0));
  const ll::AttnFns& f = ll::attn_fns();
  (kind == "gelu" ? f.gelu_mul : f.silu_mul)(out.mutable_data(), up.data(), x.shape(0));
  return out;
}

static py::dict act_stats_py(ll::Model& x) {
  std::lock_guard<std::mutex> lock(x.busy);
  if (!x.act_stats) throw std::invalid_argument("activation statistics are off (set_act_stats(True) first)");
  py::dict out;
  const ll::ActStats& st = *x.act_stats;
  for (size_t i = 0; i < st.names.size(); ++i) {
    const py::ssize_t n_mat = (py::ssize_t)st.count[i].size();
    py::array_t<double> sum2({n_mat, (py::ssize_t)st.K[i]});
    std::copy(st.sum2[i].begin(), st.sum2[i].end(), sum2.mutable_data());
    py::array_t<int64_t> count(n_mat);
    std::copy(st.count[i].begin(), st.count[i].end(), count.mutable_data());
    out[py::str(st.names[i])] = py::make_tuple(sum2, count);
  }
  return out;
}

static void bind_model(py::module_& m) {
  m.def("gated_activation", &gated_activation_py, py::arg("kind"), py::arg("x"), py::arg("up"),
        "act(x) * up with the active ISA's kernel; kind 'silu' or 'gelu' (tanh approximation).");
  py::class_<ll::Model>(m, "Model")
      .def(py::init(&make_model), py::arg("buffer"), py::arg("hparams"), py::arg("tensors"),
           py::arg("n_threads"), py::arg("precise") = false, py::arg("repack") = true,
           py::arg("release_pages") = false, py::keep_alive<1, 2>(),
           "Bind the weights of a GGUF file already parsed by llamalite.gguf; precise=True keeps\n"
           "every matmul's activations float32 (slower). repack: layer weights of the\n"
           "32-value types go into the x8 layout (faster kernels, same results). release_pages: the\n"
           "buffer is a file mapping whose pages of repacked tensors may be dropped (never for\n"
           "anonymous memory).")
      .def_property_readonly("n_x8", [](const ll::Model& x) { return x.n_x8; },
                             "How many weights were repacked into the x8 layout at load.")
      .def_property_readonly("x8_bytes", [](const ll::Model& x) { return x.x8_bytes; },
                             "Bytes of the repacked weights.")
      .def_property_readonly("n_threads", [](const ll::Model& x) { return x.pool->size(); })
      .def_property_readonly("precise", [](const ll::Model& x) { return x.precise; })
      .def_property_readonly("n_vocab", [](const ll::Model& x) { return x.hp.n_vocab; })
      .def("forward", &model_forward, py::arg("kv"), py::arg("tokens"), py::arg("positions"),
           py::arg("seq_ids"), py::arg("block_tables"), py::arg("logit_rows"),
           "One engine step (GIL released): float32 logits [len(logit_rows), n_vocab].")
      .def("set_act_stats", [](ll::Model& x, bool on) { on ? ll::enable_act_stats(x) : ll::disable_act_stats(x); },
           py::arg("on"),
           "Start (from zero) or stop collecting, for every layer matmul weight, the sum of the\n"
           "squared float activations per input column and the rows seen, per expert for the\n"
           "3-D expert tensors (llamalite imatrix).")
      .def("act_stats", &act_stats_py,
           "{tensor name: (float64 sum of x^2 per input column [n_mat, K], int64 rows seen [n_mat])}\n"
           "since set_act_stats(True); n_mat is n_expert for the 3-D ffn_*_exps tensors (each\n"
           "expert's rows are the tokens routed to it), 1 otherwise.");
  py::class_<ll::KVCache>(m, "KVCache")
      .def(py::init([](const ll::Model& model, int32_t n_blocks, int32_t block_size,
                       const std::string& dtype) {
             if (dtype != "f16" && dtype != "f32")
               throw py::value_error("KV cache dtype must be 'f16' or 'f32', got '" + dtype + "'");
             return std::make_unique<ll::KVCache>(
                 model.hp.n_layer, n_blocks, block_size, model.hp.n_head_kv, model.hp.head_dim,
                 model.hp.head_dim_v, dtype == "f16" ? ll::KVType::f16 : ll::KVType::f32);
           }),
           py::arg("model"), py::arg("n_blocks"), py::arg("block_size"), py::arg("dtype") = "f16")
      .def_property_readonly("dtype", [](const ll::KVCache& kv) {
        return std::string(kv.type == ll::KVType::f16 ? "f16" : "f32");
      })
      .def_readonly("n_blocks", &ll::KVCache::n_blocks)
      .def_readonly("block_size", &ll::KVCache::block_size)
      .def_property_readonly("nbytes", &ll::KVCache::nbytes)
      .def("copy_block", &ll::KVCache::copy_block, py::arg("src"), py::arg("dst"),
           "Copy every layer's K/V of block src into block dst.");
}

// --- kernels ---------------------------------------------------------------------
namespace {

using U8Array = py::array_t<uint8_t, py::array::c_style>;
using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

int resolve_threads(py::object n_threads) {
  if (n_threads.is_none()) return ll::default_thread_count();
  int n = n_threads.cast<int>();
  if (n < 1 || n > 1024) throw std::invalid_argument("n_threads must be between 1 and 1024, got " + std::to_string(n));
  return n;
}

py::dict type_traits_dict(int32_t type) {
  const ll::TypeTraits& t = ll::type_traits(type);
  py::dict d;
  d["name"] = t.name;
  d["block_size"] = t.block_size;
  d["type_size"] = t.type_size;
  d["can_matmul"] = t.can_matmul;
  return d;
}

py::array_t<float> dequantize_py(int32_t type, U8Array raw, int64_t n) {
  if (n < 0) throw std::invalid_argument("dequantize: n must be >= 0, got " + std::to_string(n));
  const size_t need = ll::row_bytes(type, n);  // validates the type and block multiple
  if ((size_t)raw.size() < need) {
    throw std::invalid_argument("dequantize: " + std::to_string(n) + " values of " + ll::type_traits(type).name +
                                " need " + std::to_string(need) + " bytes, got " + std::to_string(raw.size()));
  }
  py::array_t<float> out(n);
  const uint8_t* src = raw.data();
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    ll::dequantize_row(type, src, dst, n);
  }
  return out;
}

// A clear error unless [N, K] weights of type have an x8 layout.
void require_x8(const char* who, int32_t type, int64_t N, int64_t K) {
  if (ll::x8_supported(type, N, K)) return;
  throw std::invalid_argument(std::string(who) + ": " + ll::type_traits(type).name + " [" + std::to_string(N) + ", " +
                              std::to_string(K) + "] has no x8 layout (32-value types, Q4_K, Q6_K; N a multiple of 8)");
}

// W [N, row_bytes] ggml rows -> the same N rows in the x8 layout (same shape).
py::array_t<uint8_t> pack_x8_py(int32_t type, U8Array W, int64_t K) {
  if (W.ndim() != 2) throw std::invalid_argument("pack_x8: W must be a 2-D uint8 array [N, row_bytes]");
  const int64_t N = W.shape(0);
  require_x8("pack_x8", type, N, K);
  if ((size_t)W.shape(1) != ll::row_bytes(type, K)) throw std::invalid_argument("pack_x8: W rows must be row_bytes(type, K)");
  py::array_t<uint8_t> out({W.shape(0), W.shape(1)});
  ll::pack_x8(type, W.data(), N, K, out.mutable_data(), 0, N / 8);
  return out;
}

// The inverse: rows of a packed [N, row_bytes] array as ggml rows.
py::array_t<uint8_t> unpack_x8_py(int32_t type, U8Array P, int64_t K) {
  if (P.ndim() != 2) throw std::invalid_argument("unpack_x8: P must be a 2-D uint8 array [N, row_bytes]");
  const int64_t N = P.shape(0);
  if (!ll::x8_supported(type, N, K) || (size_t)P.shape(1) != ll::row_bytes(type, K)) {
    throw std::invalid_argument("unpack_x8: P is not an x8 tensor of this type and K");
  }
  py::array_t<uint8_t> out({P.shape(0), P.shape(1)});
  ll::unpack_x8_rows(type, P.data(), N, K, 0, N, out.mutable_data());
  return out;
}

py::array_t<float> matmul_py(int32_t type, U8Array W, F32Array X, py::object n_threads, bool precise, bool x8) {
  const ll::TypeTraits& t = ll::type_traits(type);
  if (!t.can_matmul) throw std::invalid_argument(std::string("matmul: ") + t.name + " cannot be a weight type");
  if (W.ndim() != 2) throw std::invalid_argument("matmul: W must be a 2-D uint8 array [N, row_bytes]");
  if (X.ndim() != 2) throw std::invalid_argument("matmul: X must be a 2-D float32 array [M, K]");
  const int64_t N = W.shape(0), M = X.shape(0), K = X.shape(1);
  if (K <= 0 || K % t.block_size != 0) {
    throw std::invalid_argument("matmul: K = " + std::to_string(K) + " is not a positive multiple of the " + t.name +
                                " block size " + std::to_string(t.block_size));
  }
  const size_t rb = ll::row_bytes(type, K);
  if ((size_t)W.shape(1) != rb) {
    throw std::invalid_argument("matmul: W rows have " + std::to_string(W.shape(1)) + " bytes but K = " +
                                std::to_string(K) + " values of " + t.name + " take " + std::to_string(rb));
  }
  if (x8) require_x8("matmul", type, N, K);
  const int nt = resolve_threads(n_threads);
  py::array_t<float> Y({M, N});
  const uint8_t* w = W.data();
  const float* x = X.data();
  float* y = Y.mutable_data();
  {
    py::gil_scoped_release nogil;
    auto lock = ll::shared_pool_lock();
    if (x8) ll::matmul_x8(ll::shared_pool(nt), type, w, N, K, x, M, y, precise);
    else ll::matmul(ll::shared_pool(nt), type, w, N, K, x, M, y, precise);
  }
  return Y;
}

// Several weights times one X, quantized once (ll::quantize_acts +
// ll::matmul_prepared): the pattern of Q/K/V and gate/up projections.
std::vector<py::array_t<float>> matmul_shared_py(std::vector<int32_t> types, std::vector<U8Array> Ws, F32Array X,
                                                 py::object n_threads, bool precise) {
  if (types.empty() || types.size() != Ws.size()) {
    throw std::invalid_argument("matmul_shared: give one type per weight matrix (and at least one)");
  }
  if (X.ndim() != 2) throw std::invalid_argument("matmul_shared: X must be a 2-D float32 array [M, K]");
  const int64_t M = X.shape(0), K = X.shape(1);
  for (size_t i = 0; i < Ws.size(); i++) {
    const ll::TypeTraits& t = ll::type_traits(types[i]);
    if (!t.can_matmul) throw std::invalid_argument(std::string("matmul_shared: ") + t.name + " cannot be a weight type");
    if (Ws[i].ndim() != 2 || (size_t)Ws[i].shape(1) != ll::row_bytes(types[i], K)) {
      throw std::invalid_argument("matmul_shared: weight " + std::to_string(i) + " must be uint8 [N, row_bytes(type, K)]");
    }
  }
  const int nt = resolve_threads(n_threads);
  std::vector<py::array_t<float>> out;
  for (auto& W : Ws) out.emplace_back(std::vector<py::ssize_t>{(py::ssize_t)M, (py::ssize_t)W.shape(0)});
  std::vector<float*> ys;
  for (auto& y : out) ys.push_back(y.mutable_data());
  {
    py::gil_scoped_release nogil;
    auto lock = ll::shared_pool_lock();
    ll::ThreadPool& pool = ll::shared_pool(nt);
    ll::QuantizedActs xq;
    ll::quantize_acts(pool, types[0], X.data(), K, M, K, xq, precise);
    for (size_t i = 0; i < Ws.size(); i++) {
      ll::matmul_prepared(pool, types[i], Ws[i].data(), Ws[i].shape(0), xq, ys[i], Ws[i].shape(0));
    }
  }
  return out;
}

// X [M, K] quantized for weight_type, as the bytes matmul's kernels read.
py::array_t<uint8_t> quantize_activations_py(int32_t weight_type, F32Array X) {
  if (X.ndim() != 2) throw std::invalid_argument("quantize_activations: X must be a 2-D float32 array [M, K]");
  ll::QuantizedActs xq;
  const int64_t M = X.shape(0), K = X.shape(1);
  xq.prepare(weight_type, M, K);
  ll::quantize_acts_rows(X.data(), K, xq, 0, M);
  py::array_t<uint8_t> out({(py::ssize_t)M, (py::ssize_t)xq.row_bytes});
  if (M > 0) std::memcpy(out.mutable_data(), xq.data, (size_t)M * xq.row_bytes);
  return out;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (int i = 0; i < ll::kNumIsas; i++) {
    if (ll::isa_supported((ll::ISA)i)) out.push_back(ll::isa_name((ll::ISA)i));
  }
  return out;
}

// src [rows, n_per_row] float32, or src_type's rows uint8 [rows, row_bytes(src_type,
// n_per_row)] -> uint8 [rows, row_bytes] of `type`, as llama.cpp's ggml_quantize_chunk
// makes it from the same float32 values (ll::quantize_rows); the GIL is released meanwhile.
py::array_t<uint8_t> quantize_rows_py(int32_t type, py::array src, py::object imatrix, py::object threads,
                                      py::object src_type_obj) {
  if (!ll::can_quantize(type)) {
    std::string names;
    for (int32_t t : ll::quantize_types()) names += std::string(names.empty() ? "" : ", ") + ll::type_traits(t).name;
    throw std::invalid_argument("quantize_rows: cannot produce type " + std::to_string(type) +
                                (ll::is_known_type(type) ? std::string(" (") + ll::type_traits(type).name + ")" : "") +
                                "; the types it makes: " + names);
  }
  const ll::TypeTraits& t = ll::type_traits(type);
  const int32_t src_type = src_type_obj.is_none() ? ll::TYPE_F32 : src_type_obj.cast<int32_t>();
  if (src_type != ll::TYPE_F32 && !ll::can_quantize(src_type)) {
    throw std::invalid_argument("quantize_rows: cannot read src_type " + std::to_string(src_type) +
                                (ll::is_known_type(src_type) ? std::string(" (") + ll::type_traits(src_type).name + ")" : "") +
                                "; it reads F32 and the types it makes");
  }
  const ll::TypeTraits& ts = ll::type_traits(src_type);
  const bool raw = !src_type_obj.is_none();
  if (raw && !py::isinstance<py::array_t<uint8_t>>(src)) {
    throw std::invalid_argument(std::string("quantize_rows: with src_type ") + ts.name +
                                ", src must be a uint8 array of its rows, got dtype " +
                                py::str(src.dtype()).cast<std::string>());
  }
  if (!raw && !py::isinstance<py::array_t<float>>(src)) {
    throw std::invalid_argument("quantize_rows: src must be a float32 array, got dtype " +
                                py::str(src.dtype()).cast<std::string>() + " (convert with .astype(np.float32))");
  }
  if (src.ndim() != 2) {
    throw std::invalid_argument("quantize_rows: src must be 2-D [rows, n_per_row], got " + std::to_string(src.ndim()) +
                                " dimensions");
  }
  if (!(src.flags() & py::array::c_style)) {
    throw std::invalid_argument("quantize_rows: src must be C-contiguous (use np.ascontiguousarray)");
  }
  const int64_t rows = src.shape(0);
  int64_t n = src.shape(1);
  if (raw) {   // bytes per row -> values per row
    if (src.shape(1) <= 0 || src.shape(1) % (int64_t)ts.type_size != 0) {
      throw std::invalid_argument(std::string("quantize_rows: rows of ") + ts.name + " are whole blocks of " +
                                  std::to_string(ts.type_size) + " bytes, got " + std::to_string(src.shape(1)) +
                                  " bytes per row");
    }
    n = src.shape(1) / (int64_t)ts.type_size * ts.block_size;
  }
  if (n <= 0 || n % t.block_size != 0) {
    throw std::invalid_argument(std::string("quantize_rows: ") + t.name + " needs rows of a positive multiple of " +
                                std::to_string(t.block_size) + " values, got " + std::to_string(n));
  }
  const int n_threads = resolve_threads(threads);
  py::array_t<float, py::array::c_style> qw;
  const float* qw_ptr = nullptr;
  if (!imatrix.is_none()) {
    py::array im = py::array::ensure(imatrix);
    if (!im || im.dtype().kind() != 'f') {
      throw std::invalid_argument("quantize_rows: imatrix must be a float array of n_per_row values");
    }
    qw = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(im);
    if (qw.ndim() != 1 || qw.shape(0) != n) {
      throw std::invalid_argument("quantize_rows: imatrix must hold one weight per column: 1-D of " +
                                  std::to_string(n) + " values, got shape of " + std::to_string(qw.size()) + " values in " +
                                  std::to_string(qw.ndim()) + " dimensions");
    }
    qw_ptr = qw.data();
  }
  const size_t rb = ll::row_bytes(type, n);
  py::array_t<uint8_t> out({(py::ssize_t)rows, (py::ssize_t)rb});
  const void* x = src.data();
  uint8_t* y = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (n_threads == 1) {
      ll::quantize_rows(type, src_type, x, y, rows, n, qw_ptr, nullptr);
    } else {
      auto lock = ll::shared_pool_lock();
      ll::quantize_rows(type, src_type, x, y, rows, n, qw_ptr, &ll::shared_pool(n_threads));
    }
  }
  return out;
}

void bind_kernels(py::module_& m) {
  // LLAMALITE_ISA is read once, here, at import.
  if (const char* env = std::getenv("LLAMALITE_ISA")) {
    std::string name(env);
    if (!name.empty()) {
      try {
        ll::set_active_isa(ll::isa_from_name(name));
      } catch (const std::exception& e) {
        throw std::runtime_error(std::string("LLAMALITE_ISA=") + name + ": " + e.what());
      }
    }
  }
  m.def("type_traits", &type_traits_dict, py::arg("type"),
        "Traits of a GGML type id: name, block_size, type_size, can_matmul (ValueError if unknown).");
  m.def("row_bytes", [](int32_t type, int64_t n) { return ll::row_bytes(type, n); }, py::arg("type"), py::arg("n"),
        "Bytes of a row of n values of the type.");
  m.def("dequantize", &dequantize_py, py::arg("type"), py::arg("raw"), py::arg("n"),
        "Dequantize n values of the given type from raw bytes into a float32 array.");
  m.def("matmul", &matmul_py, py::arg("type"), py::arg("W"), py::arg("X"), py::arg("n_threads") = py::none(),
        py::arg("precise") = false, py::arg("x8") = false,
        "Y[M, N] = X[M, K] . W[N, K]^T with W quantized (uint8 [N, row_bytes]); the GIL is released.\n"
        "precise=True: X stays float32 and W rows are dequantized (no 8-bit activation rounding).\n"
        "x8=True: W is in the x8 layout (pack_x8), as a loaded model keeps its layer weights.");
  m.def("pack_x8", &pack_x8_py, py::arg("type"), py::arg("W"), py::arg("K"),
        "W [N, row_bytes] ggml rows -> the x8 layout (8 rows interleaved per block; 32-value types, Q4_K, Q6_K; N % 8 == 0).");
  m.def("unpack_x8", &unpack_x8_py, py::arg("type"), py::arg("P"), py::arg("K"),
        "The x8 layout back to ggml rows (pack_x8's inverse).");
  m.def("matmul_shared", &matmul_shared_py, py::arg("types"), py::arg("Ws"), py::arg("X"),
        py::arg("n_threads") = py::none(), py::arg("precise") = false,
        "[X . W_i^T for each W_i], X quantized once for all (their types must share an activation type;\n"
        "with precise=True any types).");
  m.def("quantize_activations", &quantize_activations_py, py::arg("weight_type"), py::arg("X"),
        "X [M, K] quantized for weight_type's kernels: uint8 [M, row_bytes] (BlockQ8A, Q8_K or float32 rows).");
  m.def("quantize_rows", &quantize_rows_py, py::arg("type"), py::arg("src"), py::arg("imatrix") = py::none(),
        py::arg("n_threads") = 1, py::arg("src_type") = py::none(),
        "float32 [rows, n_per_row] -> uint8 [rows, row_bytes] of a GGUF type, bit-identical to llama.cpp's\n"
        "ggml_quantize_chunk; imatrix: n_per_row importance weights (None: the reference path). GIL released.\n"
        "n_threads None: the physical cores. src_type (F16, BF16, a quantized type): src is uint8\n"
        "[rows, row bytes] of that type, converted to float32 row by row on the worker threads (the same\n"
        "bytes as converting first).");
  m.def("quantize_types", []() { return ll::quantize_types(); }, "The GGUF type ids quantize_rows can produce.");
  m.def("set_isa", [](const std::string& name) { ll::set_active_isa(ll::isa_from_name(name)); }, py::arg("name"),
        "Force the kernel set: one of supported_isas() (generic, avx2, avx512, amx; neon, dotprod, i8mm on aarch64); RuntimeError if the CPU lacks it.");
  m.def("active_isa", []() { return std::string(ll::isa_name(ll::active_isa())); });
  m.def("best_isa", []() { return std::string(ll::isa_name(ll::best_supported_isa())); });
  m.def("supported_isas", &supported_isas);
  m.def("cpu_features", []() { return ll::cpu_features(); });
  m.def("default_thread_count", &ll::default_thread_count);

}

}  // namespace

// --- gguf ---

// gguf_scan_strings(buffer, pos, count): read a GGUF string array.
// Success: (True, end_pos, blob: bytes, offsets: int64[count + 1]) where string i
// is blob[offsets[i]:offsets[i + 1]]. Failure: (False, bad_index, bad_pos,
// bad_length, length_cut) for the Python loader to turn into a GGUFError; a
// bad_index of -1 means the buffer changed between the two passes.
static py::tuple gguf_scan_strings_py(py::buffer buffer, uint64_t pos, uint64_t count) {
  py::buffer_info info = buffer.request();
  if (info.ndim != 1 || info.itemsize != 1 || (info.shape[0] > 1 && info.strides[0] != 1))
    throw py::value_error("gguf_scan_strings: expected a contiguous 1-D byte buffer");
  const auto* data = static_cast<const uint8_t*>(info.ptr);
  const uint64_t size = static_cast<uint64_t>(info.shape[0]);

  ll::StringScanResult r;
  {
    py::gil_scoped_release release;
    r = ll::scan_gguf_strings(data, size, pos, count);
  }
  if (!r.ok)
    return py::make_tuple(false, r.bad_index, r.bad_pos, r.bad_length, r.length_cut);

  // count <= (size - pos) / 8 and total_bytes <= size - pos - 8 * count, so these two
  // allocations together stay within the array's bytes in the file plus 8.
  py::array_t<int64_t> offsets(static_cast<py::ssize_t>(count + 1));  // [count + 1]
  PyObject* raw = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(r.total_bytes));
  if (raw == nullptr) throw py::error_already_set();
  py::bytes blob = py::reinterpret_steal<py::bytes>(raw);  // [total_bytes]
  bool same;
  {
    py::gil_scoped_release release;
    same = ll::gather_gguf_strings(data, size, pos, count, offsets.mutable_data(),
                                          reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(raw)),
                                          r.total_bytes);
  }
  if (!same) return py::make_tuple(false, -1, pos, 0, false);
  return py::make_tuple(true, r.end, blob, offsets);
}

static void bind_gguf(py::module_& m) {
  m.def("gguf_scan_strings", &gguf_scan_strings_py, py::arg("buffer"), py::arg("pos"),
        py::arg("count"),
        "Scan `count` GGUF strings at byte `pos` of a 1-D byte buffer, bounds-checked.\n"
        "Returns (True, end, blob, offsets) or (False, bad_index, bad_pos, bad_length, length_cut).");
}

// --- sampling ---
static void bind_sampling(py::module_& m) {
  m.def(
      "top_k_indices",
      [](py::array_t<float, py::array::c_style | py::array::forcecast> logits, int64_t k) {
        if (logits.ndim() != 1) {
          throw py::value_error("top_k_indices: logits must be 1-D, got " +
                                std::to_string(logits.ndim()) + " dimensions");
        }
        if (k < 0) throw py::value_error("top_k_indices: k must be >= 0, got " + std::to_string(k));
        const int64_t n = logits.shape(0);
        if (n > std::numeric_limits<int32_t>::max()) {
          throw py::value_error("top_k_indices: vocabulary too large for int32 ids");
        }
        const int64_t count = k < n ? k : n;
        py::array_t<int32_t> out(count);
        const float* src = logits.data();
        int32_t* dst = out.mutable_data();
        {
          py::gil_scoped_release release;
          ll::top_k_indices(src, n, count, dst);
        }
        return out;
      },
      py::arg("logits"), py::arg("k"),
      "Ids of the k largest logits (float32 [n_vocab]), best first, ties to the lower id; "
      "NaN counts as -inf. Returns int32 [min(k, n_vocab)].");
  m.def(
      "top_p_indices",
      [](py::array_t<float, py::array::c_style | py::array::forcecast> logits, double p) {
        if (logits.ndim() != 1) {
          throw py::value_error("top_p_indices: logits must be 1-D, got " +
                                std::to_string(logits.ndim()) + " dimensions");
        }
        if (!(p > 0.0 && p <= 1.0)) {
          throw py::value_error("top_p_indices: p must be in (0, 1], got " + std::to_string(p));
        }
        const int64_t n = logits.shape(0);
        if (n > std::numeric_limits<int32_t>::max()) {
          throw py::value_error("top_p_indices: vocabulary too large for int32 ids");
        }
        std::vector<int32_t> ids(static_cast<size_t>(n));  // [n] capacity
        const float* src = logits.data();
        int64_t count = 0;
        {
          py::gil_scoped_release release;
          count = ll::top_p_indices(src, n, p, ids.data());
        }
        py::array_t<int32_t> out(count);
        std::copy(ids.begin(), ids.begin() + count, out.mutable_data());
        return out;
      },
      py::arg("logits"), py::arg("p"),
      "The top-p set over all logits (float32 [n_vocab]): the fewest ids, best first, whose "
      "softmax mass reaches p; grouped coarsely best first, not sorted. Returns int32 [count].");
}

// --- attention ---
// _core.attention(k, v, q, positions, seq_ids, block_tables, scale, window=0,
//                 tile_tokens=8, min_tasks=1) -> float32 [n_tokens, n_head, head_dim_v]
// The forward pass's attention over a paged cache given as arrays (for tests):
// k [n_blocks, block_size, n_head_kv, head_dim] and v [..., head_dim_v], both float16
// or both float32; q float32 [n_tokens, n_head, head_dim]. Runs every task of
// plan_attention(tile_tokens, min_tasks) on the calling thread, active ISA.
namespace {

py::array_t<float> attention_py(py::array k, py::array v,
                                py::array_t<float, py::array::c_style | py::array::forcecast> q,
                                py::array_t<int32_t, py::array::c_style | py::array::forcecast> positions,
                                py::array_t<int32_t, py::array::c_style | py::array::forcecast> seq_ids,
                                py::array_t<int32_t, py::array::c_style | py::array::forcecast> block_tables,
                                float scale, int32_t window, int32_t tile_tokens, int32_t min_tasks) {
  if (!(k.dtype().kind() == 'f' && (k.itemsize() == 2 || k.itemsize() == 4)))
    throw py::value_error("k must be a float16 or float32 array");
  if (!k.dtype().is(v.dtype())) throw py::value_error("k and v must have the same dtype");
  if (!(k.flags() & py::array::c_style) || !(v.flags() & py::array::c_style))
    throw py::value_error("k and v must be C-contiguous");
  if (k.ndim() != 4 || v.ndim() != 4) throw py::value_error("k and v must be [n_blocks, block_size, n_head_kv, dim]");
  for (int i = 0; i < 3; ++i) {
    if (k.shape(i) != v.shape(i)) throw py::value_error("k and v must agree in their first three dimensions");
  }
  if (q.ndim() != 3 || q.shape(2) != k.shape(3)) throw py::value_error("q must be [n_tokens, n_head, head_dim]");
  if (block_tables.ndim() != 2) throw py::value_error("block_tables must be [n_seqs, max_blocks]");
  const int64_t n = q.shape(0), n_blocks = k.shape(0), bs = k.shape(1), n_kv = k.shape(2);
  if (n_blocks < 1 || bs < 1 || n_kv < 1 || k.shape(3) < 1 || v.shape(3) < 1)
    throw py::value_error("k and v must not be empty");
  if (q.shape(1) % n_kv != 0) throw py::value_error("n_head must be a multiple of n_head_kv");
  if (positions.ndim() != 1 || seq_ids.ndim() != 1 || positions.shape(0) != n || seq_ids.shape(0) != n)
    throw py::value_error("positions and seq_ids must be 1-D with one entry per token");
  if (tile_tokens < 1 || min_tasks < 1) throw py::value_error("tile_tokens and min_tasks must be >= 1");
  const int64_t max_blocks = block_tables.shape(1);
  for (int64_t t = 0; t < n; ++t) {
    const int32_t pos = positions.data()[t], seq = seq_ids.data()[t];
    if (seq < 0 || seq >= block_tables.shape(0)) throw py::value_error("seq_ids must index block_tables rows");
    if (pos < 0 || pos >= max_blocks * bs) throw py::value_error("a position lies outside its block table");
    for (int64_t j = 0; j <= pos / bs; ++j) {
      const int32_t blk = block_tables.data()[seq * max_blocks + j];
      if (blk < 0 || blk >= n_blocks) throw py::value_error("block_tables holds a block id out of range");
    }
  }
  ll::AttnStep st;
  st.kv = ll::KVLayerView{static_cast<const uint8_t*>(k.data()), static_cast<const uint8_t*>(v.data()),
                          (int32_t)bs, (int32_t)n_kv, (int32_t)k.shape(3), (int32_t)v.shape(3),
                          k.itemsize() == 2};
  st.n_tokens = (int32_t)n;
  st.n_head = (int32_t)q.shape(1);
  st.q = q.data();
  py::array_t<float> out({(py::ssize_t)n, (py::ssize_t)q.shape(1), (py::ssize_t)v.shape(3)});
  st.out = out.mutable_data();
  st.positions = positions.data();
  st.seq_ids = seq_ids.data();
  st.block_tables = block_tables.data();
  st.max_blocks = (int32_t)max_blocks;
  st.window = window;
  st.scale = scale;
  {
    py::gil_scoped_release release;
    for (const ll::AttnTask& task : ll::plan_attention(st, tile_tokens, min_tasks)) ll::run_attention_task(st, task);
  }
  return out;
}

}  // namespace

static void bind_attention(py::module_& m) {
  m.def("attention", &attention_py, py::arg("k"), py::arg("v"), py::arg("q"), py::arg("positions"),
        py::arg("seq_ids"), py::arg("block_tables"), py::arg("scale"), py::arg("window") = 0,
        py::arg("tile_tokens") = 8, py::arg("min_tasks") = 1,
        "The forward pass's attention over a paged cache k, v [n_blocks, block_size, n_head_kv, dim]\n"
        "(float16 or float32) for queries q [n_tokens, n_head, head_dim] at positions of sequences\n"
        "seq_ids: float32 [n_tokens, n_head, head_dim_v]. tile_tokens / min_tasks set how the work\n"
        "is split (never the result).");
}

// --- module ---

PYBIND11_MODULE(_core, m) {
  m.doc() = "llamalite C++ core: GGUF block formats, quantized kernels, forward pass";
  m.attr("__version__") = LLAMALITE_VERSION;
  bind_gguf(m);
  bind_kernels(m);
  bind_model(m);
  bind_sampling(m);
  bind_attention(m);
}
