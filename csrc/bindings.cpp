// bindings.cpp - the one pybind11 binding file: llamalite._core.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "gguf_scan.h"
#include "sampling.h"

namespace py = pybind11;

// --- gguf ---

// gguf_scan_strings(buffer, pos, count): scan a GGUF string array.
// Success: (True, end_pos, blob: bytes, offsets: int64[count + 1]) where string i
// is blob[offsets[i]:offsets[i + 1]]. Failure: (False, bad_index, bad_pos,
// bad_length, length_cut) for the Python loader to turn into a GGUFError.
static py::tuple gguf_scan_strings_py(py::buffer buffer, uint64_t pos, uint64_t count) {
  py::buffer_info info = buffer.request();
  if (info.ndim != 1 || info.itemsize != 1 || (info.shape[0] > 1 && info.strides[0] != 1))
    throw py::value_error("gguf_scan_strings: expected a contiguous 1-D byte buffer");
  const auto* data = static_cast<const uint8_t*>(info.ptr);
  const uint64_t size = static_cast<uint64_t>(info.shape[0]);

  std::vector<uint64_t> starts, lengths;
  llamalite::StringScanResult r;
  {
    py::gil_scoped_release release;
    r = llamalite::scan_gguf_strings(data, size, pos, count, starts, lengths);
  }
  if (!r.ok)
    return py::make_tuple(false, r.bad_index, r.bad_pos, r.bad_length, r.length_cut);

  py::array_t<int64_t> offsets(static_cast<py::ssize_t>(count + 1));  // [count + 1]
  int64_t* off = offsets.mutable_data();
  PyObject* raw = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(r.total_bytes));
  if (raw == nullptr) throw py::error_already_set();
  py::bytes blob = py::reinterpret_steal<py::bytes>(raw);
  char* dst = PyBytes_AS_STRING(raw);
  uint64_t at = 0;
  for (uint64_t i = 0; i < count; ++i) {
    off[i] = static_cast<int64_t>(at);
    std::memcpy(dst + at, data + starts[i], lengths[i]);
    at += lengths[i];
  }
  off[count] = static_cast<int64_t>(at);
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
          llamalite::top_k_indices(src, n, count, dst);
        }
        return out;
      },
      py::arg("logits"), py::arg("k"),
      "Ids of the k largest logits (float32 [n_vocab]), best first, ties to the lower id; "
      "NaN counts as -inf. Returns int32 [min(k, n_vocab)].");
}

// --- module ---

PYBIND11_MODULE(_core, m) {
  m.doc() = "llamalite C++ core: GGUF block formats, quantized kernels, forward pass";
  m.attr("__version__") = LLAMALITE_VERSION;
  bind_gguf(m);
  bind_sampling(m);
}
