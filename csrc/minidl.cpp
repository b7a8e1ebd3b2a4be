// The schemas of every minidl op, in one place, and the Python module init of minidl._C.
// Kernels live in linear.cpp (device-generic, ATen BLAS), cpu/*.cpp and cuda/*.cu.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import minidl._C` loads this library, which runs the TORCH_LIBRARY registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(minidl, m) {
  // y = input @ weight.T + bias
  m.def("linear_forward(Tensor input, Tensor weight, Tensor? bias) -> Tensor");
  // returns grad_input; adds the weight and bias gradients into grad_weight and grad_bias
  m.def(
      "linear_backward(Tensor grad_output, Tensor input, Tensor weight, Tensor(a!) grad_weight, "
      "Tensor(b!)? grad_bias) -> Tensor");
  m.def("tanh_forward(Tensor input) -> Tensor");
  // from the saved output y: grad_output * (1 - y^2)
  m.def("tanh_backward(Tensor grad_output, Tensor output) -> Tensor");
  m.def("relu_forward(Tensor input) -> Tensor");
  // from the saved output y: grad_output where y > 0, else 0
  m.def("relu_backward(Tensor grad_output, Tensor output) -> Tensor");
}
