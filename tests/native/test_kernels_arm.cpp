// test_kernels_arm.cpp - checks one aarch64 kernel set (neon, dotprod, i8mm)
// against the generic scalar kernels, without Python; run under qemu-aarch64 by
// tests/native/run-aarch64.sh.
//
//   test_kernels_arm ISA [MODEL DATA]  check every entry ISA fills (and the forward
//                                      pass of the synthetic model file MODEL against
//                                      DATA/desc.txt, DATA/logits.txt)
//   test_kernels_arm --refused ISA     exit 0 when forcing ISA is refused with a
//                                      message naming the missing features
//
// For every table entry the set fills (an entry that differs from the generic
// table's):
//   quantize_q8a / quantize_q8k  the same bytes as the generic quantizer;
//   matmul[type], quantized      the same bits as the generic kernel for every
//                                output (the contract of kernels_arm.inc), at M = 1
//                                and batched, over several shapes and row splits;
//   matmul[type], F32/F16/BF16   NMSE < 1e-10 against the generic kernel (the
//                                bound of tests/test_matmul.py), and batch
//                                invariance: the rows of a batched call bitwise
//                                those of M = 1 calls, whatever n0 / n1;
//   attn.silu_mul / gelu_mul     the bound of tests/test_forward.py against double
//                                precision, each element independent of n;
//   attn.load_chunk, attn_chunk, attn_chunk_pair, attn_chunk_capped
//                                against the generic functions (see check_attention).
// Entries the set leaves generic are listed. Prints one summary line:
//   ISA: N kernels, C cases checked[, forward pass ...]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_table.h"
#include "kernels.h"
#include "kv_cache.h"
#include "model.h"
#include "quant_blocks.h"

using namespace ll;

namespace {

int g_failures = 0;

void fail(const std::string& what) {
  if (g_failures < 20) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  g_failures++;
}

uint16_t f32_to_f16(float f) {
  // finite, normal-range values only (what the tests use)
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const int exp = (int)((x >> 23) & 0xFF) - 127 + 15;
  if (exp <= 0) return (uint16_t)sign;
  const uint32_t mant = (x >> 13) & 0x3FF;
  return (uint16_t)(sign | ((uint32_t)exp << 10) | mant);
}

// Random weights of `type`: random bytes with every fp16 field set to a finite
// scale (random bytes there could be inf or NaN).
std::vector<uint8_t> make_weights(int32_t type, int64_t N, int64_t K, std::mt19937& rng) {
  const size_t rb = row_bytes(type, K);
  std::vector<uint8_t> w(rb * N);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(0.002f, 0.05f);
  for (auto& b : w) b = (uint8_t)byte(rng);
  auto put16 = [&](uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); };
  if (type == TYPE_F32) {
    for (int64_t i = 0; i < N * K; i++) {
      const float f = gauss(rng);
      std::memcpy(w.data() + 4 * i, &f, 4);
    }
    return w;
  }
  if (type == TYPE_F16 || type == TYPE_BF16) {
    for (int64_t i = 0; i < N * K; i++) {
      const float f = gauss(rng);
      uint32_t x;
      std::memcpy(&x, &f, 4);
      put16(w.data() + 2 * i, type == TYPE_F16 ? f32_to_f16(f) : (uint16_t)(x >> 16));
    }
    return w;
  }
  const TypeTraits& tt = type_traits(type);
  std::vector<int> fields;   // byte offsets of the fp16 fields in a block
  switch (type) {
    case TYPE_Q4_1: case TYPE_Q5_1: case TYPE_Q4_K: case TYPE_Q5_K: fields = {0, 2}; break;
    case TYPE_Q2_K: fields = {80, 82}; break;
    case TYPE_Q3_K: fields = {108}; break;
    case TYPE_Q6_K: fields = {208}; break;
    default: fields = {0}; break;   // Q4_0, Q5_0, Q8_0, IQ4_NL, IQ4_XS
  }
  for (int64_t n = 0; n < N; n++) {
    for (int64_t b = 0; b < K / tt.block_size; b++) {
      uint8_t* blk = w.data() + n * rb + b * tt.type_size;
      for (int off : fields) put16(blk + off, f32_to_f16(scale(rng) * (byte(rng) & 1 ? 1.0f : -1.0f)));
    }
  }
  return w;
}

double nmse(const std::vector<float>& y, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); i++) {
    num += ((double)y[i] - ref[i]) * ((double)y[i] - ref[i]);
    den += (double)ref[i] * ref[i];
  }
  return den > 0 ? num / den : num;
}

bool is_float_type(int32_t t) { return t == TYPE_F32 || t == TYPE_F16 || t == TYPE_BF16; }

// The activation rows of X [M, K] for weight type `type`, quantized by `q`
// (float types: the floats themselves).
std::vector<uint8_t> prepare_x(const KernelTable& kt, int32_t type, const std::vector<float>& X, int64_t M, int64_t K,
                               size_t* xrb) {
  if (is_float_type(type)) {
    *xrb = 4 * K;
    std::vector<uint8_t> out(4 * M * K);
    std::memcpy(out.data(), X.data(), out.size());
    return out;
  }
  const bool kq = type_traits(type).block_size == QK_K;
  *xrb = kq ? (size_t)(K / QK_K) * sizeof(BlockQ8_K) : (size_t)(K / QK32) * sizeof(BlockQ8A);
  std::vector<uint8_t> out(*xrb * M);
  for (int64_t m = 0; m < M; m++) (kq ? kt.quantize_q8k : kt.quantize_q8a)(&X[m * K], out.data() + m * *xrb, K);
  return out;
}

struct Counts {
  int kernels = 0;
  int cases = 0;
};

void check_quantizers(const KernelTable& g, const KernelTable& s, std::mt19937& rng, Counts* c,
                      std::vector<std::string>* filled) {
  struct Q {
    const char* name;
    QuantizeRowFn gf, sf;
    int block;
    size_t bytes;
  };
  const Q qs[] = {{"quantize_q8a", g.quantize_q8a, s.quantize_q8a, QK32, sizeof(BlockQ8A)},
                  {"quantize_q8k", g.quantize_q8k, s.quantize_q8k, QK_K, sizeof(BlockQ8_K)}};
  for (const Q& q : qs) {
    if (q.gf == q.sf) continue;
    c->kernels++;
    filled->push_back(q.name);
    for (int64_t K : {256, 512, 2048}) {
      for (int kind = 0; kind < 4; kind++) {
        std::vector<float> x(K);
        std::normal_distribution<float> gauss(0.0f, kind == 1 ? 100.0f : 1.0f);
        for (auto& v : x) v = gauss(rng);
        if (kind == 2) std::fill(x.begin(), x.begin() + q.block, 0.0f);   // a zero block: d = 0
        if (kind == 3) for (int64_t i = 0; i < K; i += 7) x[i] = 0.5f * (float)(i % 5) - 1.0f;   // ties
        std::vector<uint8_t> a(K / q.block * q.bytes), b(a.size());
        q.gf(x.data(), a.data(), K);
        q.sf(x.data(), b.data(), K);
        if (a != b) fail(std::string(q.name) + " K=" + std::to_string(K) + " kind " + std::to_string(kind) +
                         ": bytes differ from the generic quantizer");
        c->cases++;
      }
    }
  }
}

void check_matmuls(const KernelTable& g, const KernelTable& s, std::mt19937& rng, Counts* c,
                   std::vector<std::string>* filled, std::vector<std::string>* generic) {
  const int32_t types[] = {TYPE_Q4_0, TYPE_Q4_1, TYPE_Q5_0, TYPE_Q5_1, TYPE_Q8_0, TYPE_IQ4_NL, TYPE_Q2_K, TYPE_Q3_K,
                           TYPE_Q4_K, TYPE_Q5_K, TYPE_Q6_K, TYPE_IQ4_XS, TYPE_F32, TYPE_F16, TYPE_BF16};
  for (int32_t type : types) {
    const std::string name = std::string("matmul[") + type_traits(type).name + "]";
    if (g.matmul[type] == s.matmul[type]) {
      generic->push_back(name);
      continue;
    }
    c->kernels++;
    filled->push_back(name);
    const int64_t bs = type_traits(type).block_size;
    const bool fl = is_float_type(type);
    const std::vector<int64_t> Ks = fl ? std::vector<int64_t>{8, 100, 256, 1000}
                                       : (bs == QK_K ? std::vector<int64_t>{256, 512, 2048}
                                                     : std::vector<int64_t>{32, 96, 1024});
    for (int64_t K : Ks) {
      for (int64_t N : {1, 5, 16, 37}) {
        const std::vector<uint8_t> W = make_weights(type, N, K, rng);
        const size_t wrb = row_bytes(type, K);
        const int64_t nb = fl ? K : K / bs;
        const int64_t Mmax = 9;
        std::vector<float> X(Mmax * K);
        std::normal_distribution<float> gauss(0.0f, 1.0f);
        for (auto& v : X) v = gauss(rng);
        size_t xrb;
        // the generic quantizer's rows for both (the quantizers are checked alone)
        const std::vector<uint8_t> xq = prepare_x(g, type, X, Mmax, K, &xrb);
        for (int64_t M : {1, 2, 3, 4, 5, 9}) {
          std::vector<float> yg(M * N), ys(M * N, NAN), y1(M * N, NAN), yp(M * N, NAN);
          g.matmul[type](W.data(), wrb, xq.data(), xrb, M, nb, yg.data(), N, 0, N);
          s.matmul[type](W.data(), wrb, xq.data(), xrb, M, nb, ys.data(), N, 0, N);
          // one row at a time (M = 1), and the weight rows in two uneven parts
          for (int64_t m = 0; m < M; m++) s.matmul[type](W.data(), wrb, xq.data() + m * xrb, xrb, 1, nb, y1.data() + m * N, N, 0, N);
          const int64_t cut = N / 3;
          s.matmul[type](W.data(), wrb, xq.data(), xrb, M, nb, yp.data(), N, 0, cut);
          s.matmul[type](W.data(), wrb, xq.data(), xrb, M, nb, yp.data(), N, cut, N);
          const std::string where = name + " K=" + std::to_string(K) + " N=" + std::to_string(N) +
                                    " M=" + std::to_string(M);
          if (std::memcmp(ys.data(), y1.data(), ys.size() * 4) != 0) fail(where + ": batched rows differ from M = 1");
          if (std::memcmp(ys.data(), yp.data(), ys.size() * 4) != 0) fail(where + ": row split changes the bits");
          if (fl) {
            const double e = nmse(ys, yg);
            if (!(e < 1e-10)) fail(where + ": NMSE " + std::to_string(e) + " vs generic >= 1e-10");
          } else if (std::memcmp(ys.data(), yg.data(), ys.size() * 4) != 0) {
            double maxd = 0;
            for (size_t i = 0; i < ys.size(); i++) maxd = std::fmax(maxd, std::fabs((double)ys[i] - yg[i]));
            fail(where + ": not the generic kernel's bits (max |diff| " + std::to_string(maxd) + ")");
          }
          c->cases++;
        }
      }
    }
  }
}

// attn.silu_mul / gelu_mul: x[i] = act(x[i]) * up[i] within the bound of
// tests/test_forward.py (|err| <= 2e-6 |want| + 1e-7 |x up|, against double
// precision), and each element's bits independent of n (vector bodies and tails).
void check_activations(const KernelTable& g, const KernelTable& s, std::mt19937& rng, Counts* c,
                       std::vector<std::string>* filled, std::vector<std::string>* generic) {
  struct A {
    const char* name;
    void (*gf)(float*, const float*, int64_t);
    void (*sf)(float*, const float*, int64_t);
    bool gelu;
  };
  const A acts[] = {{"attn.silu_mul", g.attn.silu_mul, s.attn.silu_mul, false},
                    {"attn.gelu_mul", g.attn.gelu_mul, s.attn.gelu_mul, true}};
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<float> x0;
  for (int i = 0; i < 997; i++) x0.push_back(4.0f * gauss(rng));
  for (float v : {0.0f, -0.0f, 1e-30f, 50.0f, -50.0f, 120.0f, -120.0f}) x0.push_back(v);
  std::vector<float> up(x0.size());
  for (auto& u : up) u = gauss(rng);
  for (const A& a : acts) {
    if (a.gf == a.sf) {
      generic->push_back(a.name);
      continue;
    }
    c->kernels++;
    filled->push_back(a.name);
    std::vector<float> full = x0;
    a.sf(full.data(), up.data(), (int64_t)full.size());
    for (int64_t n : {(int64_t)x0.size(), (int64_t)13, (int64_t)1, (int64_t)6}) {
      std::vector<float> y(x0.begin(), x0.begin() + n);
      a.sf(y.data(), up.data(), n);
      for (int64_t i = 0; i < n; i++) {
        const double v = x0[i];
        const double act = a.gelu ? 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)))
                                  : v / (1 + std::exp(-v));
        const double want = act * up[i];
        const double err = std::fabs((double)y[i] - want);
        if (!(err <= 2e-6 * std::fabs(want) + 1e-7 * std::fabs(v * up[i]))) {
          fail(std::string(a.name) + " x=" + std::to_string(v) + ": " + std::to_string(y[i]) + " vs " +
               std::to_string(want));
          break;
        }
        if (std::memcmp(&y[i], &full[i], 4) != 0) {
          fail(std::string(a.name) + " n=" + std::to_string(n) + ": element " + std::to_string(i) +
               " differs from the full-length call");
          break;
        }
      }
      c->cases++;
    }
  }
}

// --- attention over one chunk of keys (AttnFns) ---------------------------------
// Each attention entry the set fills, against the generic one over head dims 64, 128,
// 256, 80 and 20 / 12 (tails), float16 and float32 caches, slot ranges [a, b] and
// three chunks chained (m, l, acc carried):
//   load_chunk             bitwise the generic kt (rows < d) and vb (read rows), null
//                          rows 0 in kt, unread vb rows untouched;
//   attn_chunk, _capped    acc / l within 2e-5 (max |diff|, the bound of
//                          tests/test_attention.py) of the generic chain, and bitwise
//                          the same whatever the unread slots of kt and vb hold
//                          (poisoned with NaN, or with other finite values);
//   attn_chunk_pair        bitwise two attn_chunk calls.
// attn_chunk_rows / _multi (null on the aarch64 sets) are refused: not checked here.
constexpr double kAttnBound = 2e-5;

struct AttnCase {
  int64_t d, dv;
  bool f16;
  std::vector<std::vector<uint8_t>> k, v;   // [3 chunks * kAttnChunk] cache rows
};

void store_row(const std::vector<float>& x, bool f16, std::vector<uint8_t>* out) {
  out->resize(x.size() * (f16 ? 2 : 4));
  for (size_t i = 0; i < x.size(); i++) {
    if (f16) {
      const uint16_t h = f32_to_f16(x[i]);
      std::memcpy(out->data() + 2 * i, &h, 2);
    } else {
      std::memcpy(out->data() + 4 * i, &x[i], 4);
    }
  }
}

// One chunk loaded by load_chunk with rows outside [a, b] null, kt / vb first filled
// with `fill` (what the unread slots then hold for the generic loader: kt 0, vb fill).
void load(const AttnFns& f, const AttnCase& t, int chunk, int32_t a, int32_t b, float fill, std::vector<float>* kt,
          std::vector<float>* vb) {
  const uint8_t* kr[kAttnChunk];
  const uint8_t* vr[kAttnChunk];
  for (int j = 0; j < kAttnChunk; j++) {
    const bool in = j >= a && j <= b;
    kr[j] = in ? t.k[chunk * kAttnChunk + j].data() : nullptr;
    vr[j] = in ? t.v[chunk * kAttnChunk + j].data() : nullptr;
  }
  const int64_t d16 = (t.d + 15) / 16 * 16;
  kt->assign((size_t)(d16 * kAttnChunk), fill);
  vb->assign((size_t)(kAttnChunk * t.dv), fill);
  f.load_chunk(kr, vr, t.d, t.dv, t.f16, kt->data(), vb->data());
}

// The unread slots (outside [a, b]) of a loaded chunk set to `poison` (NaN) or, when
// poison is 0, to random finite values.
void poison_slots(int64_t d, int64_t dv, int32_t a, int32_t b, float poison, std::mt19937& rng, std::vector<float>* kt,
                  std::vector<float>* vb) {
  std::normal_distribution<float> gauss(0.0f, 30.0f);
  for (int j = 0; j < kAttnChunk; j++) {
    if (j >= a && j <= b) continue;
    for (int64_t i = 0; i < d; i++) (*kt)[i * kAttnChunk + j] = poison != 0.0f ? poison : gauss(rng);
    for (int64_t i = 0; i < dv; i++) (*vb)[j * dv + i] = poison != 0.0f ? poison : gauss(rng);
  }
}

bool same_bits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), 4 * x.size()) == 0;
}

void check_attention(const KernelTable& g, const KernelTable& s, std::mt19937& rng, Counts* c,
                     std::vector<std::string>* filled, std::vector<std::string>* generic, double* max_err) {
  const AttnFns& ga = g.attn;
  const AttnFns& sa = s.attn;
  struct E {
    const char* name;
    bool set;
  };
  const E entries[] = {{"attn.load_chunk", sa.load_chunk != ga.load_chunk},
                       {"attn.attn_chunk", sa.attn_chunk != ga.attn_chunk},
                       {"attn.attn_chunk_pair", sa.attn_chunk_pair != ga.attn_chunk_pair},
                       {"attn.attn_chunk_capped", sa.attn_chunk_capped != ga.attn_chunk_capped},
                       {"attn.attn_chunk_rows", sa.attn_chunk_rows != ga.attn_chunk_rows},
                       {"attn.attn_chunk_rows_multi", sa.attn_chunk_rows_multi != ga.attn_chunk_rows_multi}};
  for (const E& e : entries) {
    if (!e.set) {
      generic->push_back(e.name);
      continue;
    }
    c->kernels++;
    filled->push_back(e.name);
  }
  if (sa.attn_chunk_rows || sa.attn_chunk_rows_multi) fail("the set fills attn_chunk_rows*, which this program does not check");
  if (!entries[0].set && !entries[1].set && !entries[2].set && !entries[3].set) return;
  const int64_t dims[][2] = {{64, 64}, {128, 128}, {256, 256}, {80, 80}, {20, 12}};
  const int32_t ranges[][2] = {{0, 15}, {3, 9}, {5, 5}, {0, 0}, {15, 15}, {4, 11}, {1, 14}, {7, 8}};
  constexpr int kChunks = 3, kRanges = sizeof ranges / sizeof ranges[0];
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  for (const auto& dd : dims) {
    for (bool f16 : {false, true}) {
      AttnCase t{dd[0], dd[1], f16, {}, {}};
      const std::string tag = "d=" + std::to_string(t.d) + " dv=" + std::to_string(t.dv) + (f16 ? " f16" : " f32");
      for (int r = 0; r < kChunks * kAttnChunk; r++) {
        std::vector<float> x(t.d), y(t.dv);
        for (auto& v : x) v = gauss(rng);
        for (auto& v : y) v = gauss(rng);
        t.k.emplace_back();
        t.v.emplace_back();
        store_row(x, f16, &t.k.back());
        store_row(y, f16, &t.v.back());
      }
      std::vector<float> q0(t.d), q1(t.d);
      for (auto& v : q0) v = 2.0f * gauss(rng);
      for (auto& v : q1) v = 2.0f * gauss(rng);
      const float scale = 1.0f / std::sqrt((float)t.d);
      for (int ri = 0; ri < kRanges; ri++) {
        // load_chunk: the generic bits for the read rows; unread rows: kt 0, vb untouched
        if (entries[0].set) {
          for (int ch = 0; ch < kChunks; ch++) {
            const int32_t a = ranges[(ri + ch) % kRanges][0], b = ranges[(ri + ch) % kRanges][1];
            std::vector<float> gk, gv, sk, sv;
            load(ga, t, ch, a, b, 777.0f, &gk, &gv);
            load(sa, t, ch, a, b, 777.0f, &sk, &sv);
            gk.resize((size_t)(t.d * kAttnChunk));   // rows past d are scratch
            sk.resize(gk.size());
            if (!same_bits(gk, sk) || !same_bits(gv, sv)) {
              fail("attn.load_chunk " + tag + " [" + std::to_string(a) + ", " + std::to_string(b) + "]: not the generic bits");
            }
            c->cases++;
          }
        }
        // The chained chunks, loaded by the generic loader (unread slots poisoned).
        std::vector<std::vector<float>> kts[3], vbs[3];   // NaN, random, random again
        for (int ch = 0; ch < kChunks; ch++) {
          const int32_t a = ranges[(ri + ch) % kRanges][0], b = ranges[(ri + ch) % kRanges][1];
          for (int p = 0; p < 3; p++) {
            std::vector<float> kt, vb;
            load(ga, t, ch, a, b, 0.0f, &kt, &vb);
            poison_slots(t.d, t.dv, a, b, p == 0 ? NAN : 0.0f, rng, &kt, &vb);
            kts[p].push_back(kt);
            vbs[p].push_back(vb);
          }
        }
        for (int capped = 0; capped < 2; capped++) {
          const float cap = capped ? 2.0f : 0.0f;
          if (!(capped ? entries[3].set : entries[1].set)) continue;
          const AttnFns& fg = ga;
          auto chain = [&](const AttnFns& f, int p, const std::vector<float>& q, std::vector<float>* acc, float* m,
                           float* l) {
            *m = -INFINITY;
            *l = 0.0f;
            acc->assign((size_t)t.dv, 0.0f);
            for (int ch = 0; ch < kChunks; ch++) {
              const int32_t a = ranges[(ri + ch) % kRanges][0], b = ranges[(ri + ch) % kRanges][1];
              if (capped) {
                f.attn_chunk_capped(q.data(), kts[p][ch].data(), vbs[p][ch].data(), t.d, t.dv, scale, cap, a, b, m, l,
                                    acc->data());
              } else {
                f.attn_chunk(q.data(), kts[p][ch].data(), vbs[p][ch].data(), t.d, t.dv, scale, a, b, m, l, acc->data());
              }
            }
          };
          const std::string what = std::string(capped ? "attn.attn_chunk_capped " : "attn.attn_chunk ") + tag +
                                   " ranges from " + std::to_string(ri);
          std::vector<float> want, got[3];
          float mw, lw, ms[3], ls[3];
          chain(fg, 1, q0, &want, &mw, &lw);
          for (int p = 0; p < 3; p++) chain(sa, p, q0, &got[p], &ms[p], &ls[p]);
          double err = 0.0;
          for (int64_t i = 0; i < t.dv; i++) {
            err = std::max(err, std::fabs((double)got[1][i] / ls[1] - (double)want[i] / lw));
          }
          *max_err = std::max(*max_err, err);
          if (!(err < kAttnBound)) fail(what + ": max |diff| of acc / l " + std::to_string(err) + " vs generic");
          for (int p : {0, 2}) {
            if (!same_bits(got[p], got[1]) || std::memcmp(&ms[p], &ms[1], 4) || std::memcmp(&ls[p], &ls[1], 4)) {
              fail(what + ": depends on the unread slots' contents");
            }
          }
          c->cases++;
          if (capped || !entries[2].set) continue;
          // attn_chunk_pair: bitwise two attn_chunk calls
          std::vector<float> a0(t.dv, 0.0f), a1(t.dv, 0.0f), s1;
          float m2[2] = {-INFINITY, -INFINITY}, l2[2] = {0.0f, 0.0f}, m1, l1;
          for (int ch = 0; ch < kChunks; ch++) {
            const int32_t a = ranges[(ri + ch) % kRanges][0], b = ranges[(ri + ch) % kRanges][1];
            sa.attn_chunk_pair(q0.data(), q1.data(), kts[0][ch].data(), vbs[0][ch].data(), t.d, t.dv, scale, a, b, m2,
                               l2, a0.data(), a1.data());
          }
          chain(sa, 0, q1, &s1, &m1, &l1);
          if (!same_bits(a0, got[0]) || !same_bits(a1, s1) || std::memcmp(&m2[0], &ms[0], 4) ||
              std::memcmp(&l2[0], &ls[0], 4) || std::memcmp(&m2[1], &m1, 4) || std::memcmp(&l2[1], &l1, 4)) {
            fail("attn.attn_chunk_pair " + tag + " ranges from " + std::to_string(ri) + ": not two attn_chunk calls");
          }
          c->cases++;
        }
      }
    }
  }
}

// --- the forward pass of a synthetic model -------------------------------------
// MODEL: the file tests/tools/make_arm_forward.py --model writes; DATA
// (tests/data/arm_forward, written by the same script on x86) holds desc.txt
// (hyperparameters and tensor offsets, as the Python loader hands them to the core)
// and logits.txt: the token ids and the x86 generic build's logits for them (one
// step, all rows). The forward pass runs with
// the set's kernels; the logits must match within NMSE 1e-6 (the quantized
// kernels give the generic bits; float summation order in the ops differs).

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

double check_forward(const std::string& model, const std::string& dir, int* tokens_run) {
  const std::string file = read_file(model);
  std::istringstream desc(read_file(dir + "/desc.txt"));
  HParams hp;
  std::map<std::string, TensorDesc> tensors;
  std::string key;
  while (desc >> key) {
    if (key == "tensor") {
      std::string name;
      TensorDesc t;
      desc >> name >> t.offset >> t.type >> t.ne0 >> t.ne1;
      tensors[name] = t;
    } else if (key == "arch") desc >> hp.arch;
    else if (key == "n_vocab") desc >> hp.n_vocab;
    else if (key == "n_ctx_train") desc >> hp.n_ctx_train;
    else if (key == "n_embd") desc >> hp.n_embd;
    else if (key == "n_layer") desc >> hp.n_layer;
    else if (key == "n_head") desc >> hp.n_head;
    else if (key == "n_head_kv") desc >> hp.n_head_kv;
    else if (key == "head_dim") desc >> hp.head_dim;
    else if (key == "head_dim_v") desc >> hp.head_dim_v;
    else if (key == "n_rot") desc >> hp.n_rot;
    else if (key == "n_ff") desc >> hp.n_ff;
    else if (key == "eps") desc >> hp.eps;
    else if (key == "rope_base") desc >> hp.rope_base;
    else if (key == "rope_base_swa") desc >> hp.rope_base_swa;
    else if (key == "rope_freq_scale") desc >> hp.rope_freq_scale;
    else if (key == "rope_neox") desc >> hp.rope_neox;
    else if (key == "sliding_window") desc >> hp.sliding_window;
    else if (key == "swa_pattern") desc >> hp.swa_pattern;
    else if (key == "attn_scale") desc >> hp.attn_scale;
    else if (key == "embd_scale") desc >> hp.embd_scale;
    else if (key == "final_softcap") desc >> hp.final_softcap;
    else if (key == "sha256") desc >> key;   // checked by run-aarch64.sh
    else throw std::runtime_error("desc.txt: unknown key " + key);
  }
  std::istringstream lg(read_file(dir + "/logits.txt"));
  int n_tok = 0;
  lg >> n_tok;
  std::vector<int32_t> toks(n_tok);
  for (auto& t : toks) lg >> t;
  std::vector<float> ref((size_t)n_tok * hp.n_vocab);
  for (auto& v : ref) lg >> v;
  if (!lg) throw std::runtime_error("logits.txt: too short");
  // 8-byte aligned copy of the file (the core reads the tensors in place)
  std::vector<uint64_t> buf((file.size() + 7) / 8);
  std::memcpy(buf.data(), file.data(), file.size());
  Model m((const uint8_t*)buf.data(), file.size(), hp, tensors, 2, false, true, false);
  KVCache kv(hp.n_layer, 1, 64, hp.n_head_kv, hp.head_dim, hp.head_dim_v, KVType::f32);
  std::vector<int32_t> pos(n_tok), seq(n_tok, 0), rows(n_tok), blocks = {0};
  for (int i = 0; i < n_tok; i++) pos[i] = rows[i] = i;
  Batch b;
  b.n_tokens = n_tok;
  b.tokens = toks.data();
  b.positions = pos.data();
  b.seq_ids = seq.data();
  b.block_tables = blocks.data();
  b.n_seqs = 1;
  b.max_blocks = 1;
  b.logit_rows = rows.data();
  b.n_logit_rows = n_tok;
  std::vector<float> logits(ref.size());
  forward(m, kv, b, logits.data());
  *tokens_run = n_tok;
  return nmse(logits, ref);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s ISA [MODEL DATA_DIR] | --refused ISA\n", argv[0]);
    return 2;
  }
  try {
    if (std::string(argv[1]) == "--refused") {
      const ISA isa = isa_from_name(argv[2]);
      try {
        set_active_isa(isa);
      } catch (const std::runtime_error& e) {
        if (std::string(e.what()).find("missing") == std::string::npos) {
          std::fprintf(stderr, "FAIL: refusal without the missing features: %s\n", e.what());
          return 1;
        }
        std::printf("%s refused on this CPU (cpu features: %s): %s\n", argv[2], cpu_features().c_str(), e.what());
        return 0;
      }
      std::fprintf(stderr, "FAIL: forcing %s was accepted on a CPU without it (features: %s)\n", argv[2],
                   cpu_features().c_str());
      return 1;
    }
    const ISA isa = isa_from_name(argv[1]);
    set_active_isa(isa);   // throws where the (emulated) CPU lacks it
    if (best_supported_isa() != isa) {
      std::fprintf(stderr, "FAIL: best instruction set here is %s, expected %s (features: %s)\n",
                   isa_name(best_supported_isa()), argv[1], cpu_features().c_str());
      return 1;
    }
    const KernelTable& g = kernels_for((int)ISA::generic);
    const KernelTable& s = kernels_for((int)isa);
    std::mt19937 rng(1234);
    Counts c;
    std::vector<std::string> filled, generic;
    check_quantizers(g, s, rng, &c, &filled);
    check_matmuls(g, s, rng, &c, &filled, &generic);
    check_activations(g, s, rng, &c, &filled, &generic);
    int x8 = 0;
    for (int t = 0; t < kMaxTypeId; t++) x8 += s.matmul_x8[t] != g.matmul_x8[t];
    double attn_err = 0.0;
    check_attention(g, s, rng, &c, &filled, &generic, &attn_err);
    if (x8) fail("the set fills x8 entries this program does not check");
    std::string fwd;
    if (argc >= 4) {
      int n_tok = 0;
      const double e = check_forward(argv[2], argv[3], &n_tok);
      if (!(e < 1e-6)) fail("forward pass: logits NMSE " + std::to_string(e) + " vs the x86 build >= 1e-6");
      char line[160];
      std::snprintf(line, sizeof line, ", forward pass of %d tokens: logits NMSE %.2g vs x86", n_tok, e);
      fwd = line;
    }
    std::printf("%s: %d kernels, %d cases checked%s (cpu features: %s)\n", argv[1], c.kernels, c.cases, fwd.c_str(),
                cpu_features().c_str());
    std::printf("  attention: max |diff| of acc / l %.2g vs generic (bound %.0e)\n", attn_err, kAttnBound);
    std::string fl;
    for (auto& f : filled) fl += " " + f;
    std::printf("  filled:%s\n", fl.c_str());
    std::string gl;
    for (auto& f : generic) gl += " " + f;
    std::printf("  generic:%s matmul_x8[*]\n", gl.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAIL: %s\n", e.what());
    return 1;
  }
  if (g_failures) {
    std::fprintf(stderr, "%s: %d failures\n", argv[1], g_failures);
    return 1;
  }
  return 0;
}
