// kernels.h - the core's contract for quantized tensors: type traits,
// dequantization, activation quantization and matmul.
//
// Weights stay in the ggml block layouts straight from the mmapped GGUF file.
// A matmul computes Y[M, N] = X[M, K] . W[N, K]^T where W has N rows of K values
// stored as row_bytes(type, K) bytes each. X is float32; it is quantized once per
// matmul to the 8-bit block type that pairs with W's type (Q8_0 for the 32-value
// block types, Q8_K for the K-quants and IQ4_XS) so the dot products run in
// integer SIMD. Every kernel has a scalar generic version; AVX2 and AVX-512
// versions are chosen at import from cpuid/xgetbv, and on aarch64 the neon,
// dotprod and i8mm versions from the kernel's HWCAP bits (LLAMALITE_ISA overrides).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ll {

class ThreadPool;

// GGUF tensor type ids (the numbers in the file).
enum GGMLType : int32_t {
  TYPE_F32 = 0, TYPE_F16 = 1, TYPE_Q4_0 = 2, TYPE_Q4_1 = 3, TYPE_Q5_0 = 6,
  TYPE_Q5_1 = 7, TYPE_Q8_0 = 8, TYPE_Q8_1 = 9, TYPE_Q2_K = 10, TYPE_Q3_K = 11,
  TYPE_Q4_K = 12, TYPE_Q5_K = 13, TYPE_Q6_K = 14, TYPE_Q8_K = 15,
  TYPE_IQ4_NL = 20, TYPE_IQ4_XS = 23, TYPE_BF16 = 30,
};

struct TypeTraits {
  const char* name;     // "Q4_K"
  int64_t block_size;   // values per block
  size_t type_size;     // bytes per block
  bool can_matmul;      // usable as a weight type in matmul()
};

// Throws std::invalid_argument for a type id the core does not know.
const TypeTraits& type_traits(int32_t type);
bool is_known_type(int32_t type);
// Bytes of one row of n values (n must be a multiple of the block size).
size_t row_bytes(int32_t type, int64_t n);

// Dequantize n values (a multiple of the block size) to float32.
void dequantize_row(int32_t type, const void* src, float* dst, int64_t n);

// --- activations ------------------------------------------------------------
// X [M, K] float32 quantized for a weight type's dot product. For float weight
// types (F32, F16, BF16) the rows are kept as float32.
//
// Precise mode (prepare(..., precise = true)) keeps the rows float32 for every weight
// type: matmul_range then dequantizes each weight row (dequantize_row, bit-exact
// with gguf.quants) into a per-thread scratch and takes float32 dot products with
// the active ISA's F32 kernel. Slower (the weights are expanded to 4 bytes a value
// once per call) but free of the 8-bit activation rounding: it checks the model
// math against a float reference (Python's precise=True).
struct QuantizedActs {
  int32_t weight_type = -1;  // the weight type these were prepared for
  // TYPE_Q8_0: rows of BlockQ8A (quant_blocks.h: float32 scale + int8[32] + sum),
  // TYPE_Q8_K: rows of BlockQ8_K (GGUF layout, with bsums), TYPE_F32: plain floats
  // (float weight types, or any weight type in precise mode).
  int32_t act_type = -1;
  bool precise = false;      // prepared in precise mode
  int64_t M = 0, K = 0;
  size_t row_bytes = 0;      // bytes per quantized row
  uint8_t* data = nullptr;   // M * row_bytes bytes, 64-byte aligned
  size_t capacity = 0;
  QuantizedActs() = default;
  QuantizedActs(const QuantizedActs&) = delete;
  QuantizedActs& operator=(const QuantizedActs&) = delete;
  ~QuantizedActs();
  // Sizes the buffer for X [M, K] and weight_type (reuses memory when it fits);
  // precise: keep float32 rows whatever the weight type (see above).
  void prepare(int32_t weight_type, int64_t M, int64_t K, bool precise = false);
};

// Quantize rows [m0, m1) of X (row stride ldx floats) into xq (already prepare()d).
void quantize_acts_rows(const float* X, int64_t ldx, QuantizedActs& xq, int64_t m0, int64_t m1);

// Y[m * ldy + n] = dot(X[m], W[n]) for all m and n in [n0, n1).
// W points at row 0; rows are row_bytes(weight_type, K) bytes apart.
void matmul_range(const void* W, const QuantizedActs& xq, float* Y, int64_t ldy,
                  int64_t n0, int64_t n1);

// The whole matmul on the pool: Y[M, N] (row stride N) = X[M, K] . W[N, K]^T.
// precise: float32 activations against dequantized weight rows (see QuantizedActs).
void matmul(ThreadPool& pool, int32_t weight_type, const void* W, int64_t N, int64_t K,
            const float* X, int64_t M, float* Y, bool precise = false);

// The two halves of matmul(), for callers that multiply one X by several
// weights of the same activation type (Q, K and V; gate and up): quantize once,
// then run each weight on the pool. Results are bit-identical to matmul().
// X [M, K] with row stride ldx floats -> xq (prepare()d here for weight_type).
void quantize_acts(ThreadPool& pool, int32_t weight_type, const float* X, int64_t ldx, int64_t M,
                   int64_t K, QuantizedActs& xq, bool precise = false);
// Y[m * ldy + n] for n in [0, N). weight_type may differ from the type xq was
// prepared for when both pair with the same activation type (Q4_0 and Q8_0, say;
// in precise mode any weight type whose block size divides K);
// std::invalid_argument otherwise.
void matmul_prepared(ThreadPool& pool, int32_t weight_type, const void* W, int64_t N,
                     const QuantizedActs& xq, float* Y, int64_t ldy);

// One weight of a matmul_prepared_many() call: Y[m * ldy + n] for n in [0, N).
// x8: W is in the x8 layout (pack_x8 below) instead of ggml rows.
struct MatmulTask {
  int32_t weight_type;
  const void* W;
  int64_t N;
  float* Y;
  int64_t ldy;
  bool x8 = false;
};
// matmul_prepared() for several weights sharing xq (Q, K and V; gate and up) as
// one pool job, so a decode step waits for the workers once instead of once per
// weight. Same chunks and bits as calling matmul_prepared() for each.
void matmul_prepared_many(ThreadPool& pool, const MatmulTask* tasks, int32_t count, const QuantizedActs& xq);

// --- the x8 weight layout (repack.cpp) ----------------------------------------------
// A load-time repack of the 32-value types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL)
// and of Q4_K and Q6_K that interleaves 8 weight rows per block (quant_blocks.h, BlockQ4_0x8 ...), so the
// SIMD kernels keep one weight row per int32 lane: one scale FMA per 8 rows and
// block instead of per row, and no horizontal sums. Same size as the ggml rows
// (row_bytes(type, K) * N), and lossless (unpack_x8_rows gives the ggml bytes back).
// Every output is computed by the same operations whatever M and the row split
// are, so batch invariance holds as for ggml rows.
//
// Sets: the 32-value types also interleave sets of 4 row groups (32 rows)
// block by block: group 4s's block b, then group 4s+1's, 4s+2's, 4s+3's, then
// block b+1 of each. The kernels multiply a whole set at once, and so read the
// weights as one sequential stream (4 streams from DRAM ran at half the rate of
// one). Groups after the last whole set (N % 32 rows) follow one after
// the other, each block by block. Q4_K and Q6_K have sets of 1 group.
//
// Whether `type` has an x8 layout and N rows of K values can use it (N % 8 == 0).
bool x8_supported(int32_t type, int64_t N, int64_t K);
// Row groups per set: 4 or 1 (see above).
int x8_set_groups(int32_t type);
// Packs row groups [g0, g1) (rows 8*g0 .. 8*g1) of the ggml rows src [N, row_bytes]
// into dst (the whole packed tensor, row_bytes(type, K) * N bytes). g0 and g1
// must be whole sets: multiples of x8_set_groups(type), or g1 = N / 8.
void pack_x8(int32_t type, const uint8_t* src, int64_t N, int64_t K, uint8_t* dst, int64_t g0, int64_t g1);
// Rows [n0, n1) of a packed tensor of N rows back as ggml rows, dst [n1 - n0, row_bytes].
void unpack_x8_rows(int32_t type, const uint8_t* packed, int64_t N, int64_t K, int64_t n0, int64_t n1,
                    uint8_t* dst);
// matmul_prepared() on a packed weight.
void matmul_prepared_x8(ThreadPool& pool, int32_t weight_type, const void* W, int64_t N,
                        const QuantizedActs& xq, float* Y, int64_t ldy);
// matmul() on a packed weight (quantizes X, then matmul_prepared_x8).
void matmul_x8(ThreadPool& pool, int32_t weight_type, const void* W, int64_t N, int64_t K,
               const float* X, int64_t M, float* Y, bool precise = false);

// --- instruction sets -----------------------------------------------------------
// amx: avx512 plus AMX-INT8 tiles for batched matmuls of the 32-value x8 types
// (the same bits as avx512; only the speed differs). aarch64: neon (Armv8.0
// Advanced SIMD), dotprod (+ SDOT, Armv8.2), i8mm (+ SMMLA); for the quantized
// types all three give the generic kernels' bits.
enum class ISA : int { generic = 0, avx2 = 1, avx512 = 2, amx = 3, neon = 4, dotprod = 5, i8mm = 6 };
constexpr int kNumIsas = 7;
const char* isa_name(ISA isa);
// "generic", "avx2", "avx512", "amx", "neon", "dotprod" or "i8mm"; std::invalid_argument
// naming the choices otherwise.
ISA isa_from_name(const std::string& name);
ISA best_supported_isa();        // from cpuid/xgetbv, or HWCAP / sysctl on aarch64
bool isa_supported(ISA isa);
ISA active_isa();
// Throws std::runtime_error naming what the CPU lacks when it cannot run `isa`.
void set_active_isa(ISA isa);
// Human-readable CPU feature list: "avx2 fma f16c avx512f avx512bw avx512vnni ..."
// (aarch64: "asimd asimddp i8mm")
std::string cpu_features();

}  // namespace ll
