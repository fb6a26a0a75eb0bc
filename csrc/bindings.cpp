// bindings.cpp - the one pybind11 binding file: llamalite._core.
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "llamalite C++ core: GGUF block formats, quantized kernels, forward pass";
  m.attr("__version__") = LLAMALITE_VERSION;
}
