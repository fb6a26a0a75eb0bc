// bindings.cpp - the one pybind11 binding file: llamalite._core.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>

#include "sampling.h"

namespace py = pybind11;

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
          llamalite::top_k_indices(src, n, count, dst);
        }
        return out;
      },
      py::arg("logits"), py::arg("k"),
      "Ids of the k largest logits (float32 [n_vocab]), best first, ties to the lower id; "
      "NaN counts as -inf. Returns int32 [min(k, n_vocab)].");
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "llamalite C++ core: GGUF block formats, quantized kernels, forward pass";
  m.attr("__version__") = LLAMALITE_VERSION;
  bind_sampling(m);
}
