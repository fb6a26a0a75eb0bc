// bindings.cpp - the one pybind11 binding file: llamalite._core.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "gguf_scan.h"

namespace py = pybind11;

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

  llamalite::StringScanResult r;
  {
    py::gil_scoped_release release;
    r = llamalite::scan_gguf_strings(data, size, pos, count);
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
    same = llamalite::gather_gguf_strings(data, size, pos, count, offsets.mutable_data(),
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

// --- module ---

PYBIND11_MODULE(_core, m) {
  m.doc() = "llamalite C++ core: GGUF block formats, quantized kernels, forward pass";
  m.attr("__version__") = LLAMALITE_VERSION;
  bind_gguf(m);
}
