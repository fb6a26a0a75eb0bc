// module.cpp - llamalite_bench: the measurement loops of roofs.h for
// bench/kernels.py and bench/compare.py. A module of its own, built from
// bench/native; llamalite._core has none of it. It carries its own copy of the
// core's kernels (and so its own active instruction set, set_isa below).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"
#include "roofs.h"
#include "threadpool.h"

namespace py = pybind11;

namespace {

using U8Array = py::array_t<uint8_t, py::array::c_style>;
using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

int resolve_threads(py::object n_threads) {
  if (n_threads.is_none()) return ll::default_thread_count();
  int n = n_threads.cast<int>();
  if (n < 1 || n > 1024) throw std::invalid_argument("n_threads must be between 1 and 1024, got " + std::to_string(n));
  return n;
}

// The weights a measurement times, placed as a loaded model holds them: 64-byte
// aligned (the x8 buffer is mapped and every tensor in it starts on a 64-byte
// boundary, csrc/model.cpp), as W's bytes or (x8) its copies packed. A numpy
// array's data is only 16-byte aligned here: 16 bytes off a line, every 512-bit
// load of the read roof splits across two lines and the in-cache roof halves (83
// against 174 GB/s on one core), and every other 256-bit load of a kernel.
struct Weights {
  uint8_t* p = nullptr;
  Weights() = default;
  Weights(const Weights&) = delete;
  Weights& operator=(const Weights&) = delete;
  ~Weights() { std::free(p); }
};

void place_weights(int32_t type, const U8Array& W, int64_t N, int64_t K, bool x8, Weights* out) {
  if (x8 && !ll::x8_supported(type, N, K)) {
    throw std::invalid_argument(std::string("llamalite_bench: ") + ll::type_traits(type).name + " [" +
                                std::to_string(N) + ", " + std::to_string(K) +
                                "] has no x8 layout (32-value types, Q4_K, Q6_K; N a multiple of 8)");
  }
  out->p = (uint8_t*)std::aligned_alloc(64, ((size_t)W.size() + 63) / 64 * 64);
  if (!out->p) throw std::bad_alloc();
  if (!x8) {
    std::memcpy(out->p, W.data(), (size_t)W.size());
    return;
  }
  const size_t bytes = ll::row_bytes(type, K) * (size_t)N;  // each copy packed as its own tensor
  for (int64_t c = 0; c < W.shape(0) / N; c++) ll::pack_x8(type, W.data() + c * bytes, N, K, out->p + c * bytes, 0, N / 8);
}

// Checks shared by the matmul measurements; returns N (rows of one copy).
int64_t check_matmul(const char* who, int32_t type, const U8Array& W, const F32Array& X, int iters, int copies) {
  const ll::TypeTraits& t = ll::type_traits(type);
  if (!t.can_matmul) throw std::invalid_argument(std::string(who) + ": " + t.name + " cannot be a weight type");
  if (W.ndim() != 2 || X.ndim() != 2) throw std::invalid_argument(std::string(who) + ": W and X must be 2-D");
  if (copies < 1 || iters < 1) throw std::invalid_argument(std::string(who) + ": iters and copies must be positive");
  const int64_t K = X.shape(1);
  if ((size_t)W.shape(1) != ll::row_bytes(type, K) || W.shape(0) % copies != 0) {
    throw std::invalid_argument(std::string(who) + ": W must be [copies * N, row_bytes(type, K)]");
  }
  return W.shape(0) / copies;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (int i = 0; i < ll::kNumIsas; i++) {
    if (ll::isa_supported((ll::ISA)i)) out.push_back(ll::isa_name((ll::ISA)i));
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(llamalite_bench, m) {
  m.doc() = "llamalite's benchmark roofs and floors beside its matmul, timed in C++ (bench/native)";
  // LLAMALITE_ISA is read once, here, at import, as llamalite._core does.
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
  m.def("set_isa", [](const std::string& name) { ll::set_active_isa(ll::isa_from_name(name)); }, py::arg("name"),
        "Force the instruction set of the kernels and roofs: generic, avx2, avx512, amx, neon, dotprod or i8mm.");
  m.def("active_isa", []() { return std::string(ll::isa_name(ll::active_isa())); });
  m.def("supported_isas", &supported_isas);
  m.def(
      "read_bandwidth",
      [](size_t nbytes, py::object n_threads, int reps, int copies) {
        if (nbytes == 0 || copies < 1 || reps < 1) throw std::invalid_argument("read_bandwidth: nbytes, reps and copies must be positive");
        const int nt = resolve_threads(n_threads);
        py::gil_scoped_release nogil;
        auto lock = ll::shared_pool_lock();
        return llbench::read_bandwidth(ll::shared_pool(nt), nbytes, copies, reps);
      },
      py::arg("nbytes"), py::arg("n_threads") = py::none(), py::arg("reps") = 3, py::arg("copies") = 1,
      "Read bandwidth in GB/s (mean of reps passes after a warm-up) over `copies` buffers of nbytes, on the pool.");
  m.def(
      "int8_peak",
      [](py::object n_threads, bool tile) {
        const int nt = resolve_threads(n_threads);
        py::gil_scoped_release nogil;
        auto lock = ll::shared_pool_lock();
        return llbench::int8_peak(ll::shared_pool(nt), tile);
      },
      py::arg("n_threads") = py::none(), py::arg("tile") = false,
      "int8 dot-product peak in GMAC/s (vpdpbusd / maddubs loop in registers); tile=True: the AMX tile-product "
      "peak (TDPBSSD on full 16 x 64 tiles), 0 when the active ISA has no tiles.");
  m.def(
      "matmul_vs_read",
      [](int32_t type, U8Array W, F32Array X, py::object n_threads, int iters, int copies, bool x8,
         bool floor) -> py::tuple {
        const int64_t N = check_matmul("matmul_vs_read", type, W, X, iters, copies);
        const int64_t M = X.shape(0), K = X.shape(1);
        const int nt = resolve_threads(n_threads);
        std::vector<float> Y((size_t)(M * N));
        Weights w;
        place_weights(type, W, N, K, x8, &w);
        const float* x = X.data();
        double mm = 0.0, rd = 0.0, fl = 0.0;
        {
          py::gil_scoped_release nogil;
          auto lock = ll::shared_pool_lock();
          llbench::matmul_vs_read(ll::shared_pool(nt), type, w.p, copies, N, K, x, M, Y.data(), iters, &mm, &rd, x8,
                                  floor ? &fl : nullptr);
        }
        if (floor) return py::make_tuple(mm, rd, fl);
        return py::make_tuple(mm, rd);
      },
      py::arg("type"), py::arg("W"), py::arg("X"), py::arg("n_threads") = py::none(), py::arg("iters") = 10,
      py::arg("copies") = 1, py::arg("x8") = false, py::arg("floor") = false,
      "(matmul seconds, read seconds): means over iters rounds of one matmul then one read pass over the same "
      "weights. floor=True adds a third: seconds of a pass of the decode floor (the least work a matmul of such "
      "weights does per byte: 8-bit for Q8_0, 4-bit for the other quantized types) over the same bytes, 0.0 for "
      "float weights and where the ISA has none (generic).");
  m.def(
      "time_matmul",
      [](int32_t type, U8Array W, F32Array X, py::object n_threads, int iters, int copies, bool x8) {
        const int64_t N = check_matmul("time_matmul", type, W, X, iters, copies);
        const int64_t M = X.shape(0), K = X.shape(1);
        const int nt = resolve_threads(n_threads);
        std::vector<float> Y((size_t)(M * N));
        Weights w;
        place_weights(type, W, N, K, x8, &w);
        const float* x = X.data();
        py::gil_scoped_release nogil;
        auto lock = ll::shared_pool_lock();
        return llbench::time_matmul(ll::shared_pool(nt), type, w.p, copies, N, K, x, M, Y.data(), iters, x8);
      },
      py::arg("type"), py::arg("W"), py::arg("X"), py::arg("n_threads") = py::none(), py::arg("iters") = 10,
      py::arg("copies") = 1, py::arg("x8") = false,
      "Seconds per matmul, averaged over iters calls cycling through `copies` weight matrices.");
}
