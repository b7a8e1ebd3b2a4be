// The schemas of every minidl op, in one place, and the Python module init of minidl._C.
// Kernels live in linear.cpp, mlp.cpp, loss.cpp, sgd.cpp (device-generic), cpu/*.cpp and cuda/*.cu.
#include <Python.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "cpu/block_cache.h"
#include "cpu/streaming.h"
#include "direct_calls.h"

namespace {

// Python functions of minidl._C for the CPU block cache (minidl.memory wraps them).
PyObject* cpu_cache_info(PyObject*, PyObject*) {
  const auto i = minidl::cpu::cache_info();
  return Py_BuildValue("(LLLL)", static_cast<long long>(i.cached_bytes), static_cast<long long>(i.limit_bytes),
                       static_cast<long long>(i.hits), static_cast<long long>(i.misses));
}

PyObject* empty_cpu_cache(PyObject*, PyObject*) {
  minidl::cpu::empty_cache();
  Py_RETURN_NONE;
}

PyObject* set_cpu_cache_limit(PyObject*, PyObject* arg) {
  const long long bytes = PyLong_AsLongLong(arg);
  if (bytes == -1 && PyErr_Occurred()) return nullptr;
  if (bytes < 0) {
    PyErr_Format(PyExc_ValueError, "minidl.set_cpu_cache_limit: expected a limit >= 0 bytes, got %lld", bytes);
    return nullptr;
  }
  minidl::cpu::set_cache_limit(bytes);
  Py_RETURN_NONE;
}

// For tests: (isa, min_bytes, best isa, {isa: loop calls so far}) of the CPU loops' streaming
// stores (cpu/streaming.h).
PyObject* streaming_setting(PyObject*, PyObject*) {
  const auto s = minidl::cpu::streaming_setting();
  using minidl::cpu::streamed_loops;
  return Py_BuildValue("(sLs{sLsLsL})", s.isa.c_str(), static_cast<long long>(s.min_bytes),
                       minidl::cpu::best_streaming_isa().c_str(), "avx512",
                       static_cast<long long>(streamed_loops("avx512")), "avx2",
                       static_cast<long long>(streamed_loops("avx2")), "none",
                       static_cast<long long>(streamed_loops("none")));
}

// For tests: _set_streaming(isa, min_bytes) -> the old (isa, min_bytes).
PyObject* set_streaming(PyObject*, PyObject* args) {
  const char* isa = nullptr;
  long long min_bytes = 0;
  if (!PyArg_ParseTuple(args, "sL", &isa, &min_bytes)) return nullptr;
  try {
    const auto old = minidl::cpu::set_streaming({isa, min_bytes});
    return Py_BuildValue("(sL)", old.isa.c_str(), static_cast<long long>(old.min_bytes));
  } catch (const c10::Error& e) {
    PyErr_SetString(PyExc_ValueError, e.what_without_backtrace());
    return nullptr;
  }
}

PyMethodDef methods[] = {
    {"_cpu_cache_info", cpu_cache_info, METH_NOARGS, "(cached bytes, limit bytes, hits, misses)"},
    {"_empty_cpu_cache", empty_cpu_cache, METH_NOARGS, "Unmap every cached block."},
    {"_set_cpu_cache_limit", set_cpu_cache_limit, METH_O, "Keep at most this many bytes of freed blocks."},
    {"_streaming_setting", streaming_setting, METH_NOARGS, "(isa, min_bytes, best isa, {isa: loop calls}) of streaming stores"},
    {"_set_streaming", set_streaming, METH_VARARGS, "Stream outputs of >= min_bytes with isa; returns the old pair."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

extern "C" {
// `import minidl._C` loads this library, which runs the TORCH_LIBRARY registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  try {
    minidl::add_direct_calls(module);
  } catch (const std::exception& e) {
    Py_DECREF(module);
    PyErr_SetString(PyExc_ImportError, e.what());
    return nullptr;
  }
  return module;
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

  // Fused ops: a stack of Linear layers, each followed by an activation (0 none, 1 relu, 2 tanh).
  // Forward returns every layer's output (what backward needs).
  m.def("mlp_forward(Tensor input, Tensor[] weights, Tensor[] biases, int[] activations) -> Tensor[]");
  // Adds into grad_weights and grad_biases; writes the input's gradient into grad_input unless it
  // is None (then the first layer skips that product). Nothing is returned: functionalization
  // (opcheck, torch.compile) supports ops that mutate tensor lists only when they return nothing.
  m.def(
      "mlp_backward(Tensor grad_output, Tensor input, Tensor[] outputs, Tensor[] weights, "
      "Tensor(a!)[] grad_weights, Tensor(b!)[] grad_biases, int[] activations, Tensor(c!)? grad_input) -> ()");
  // (mean((output - target)^2), 2 (output - target) / numel)
  m.def("mse_forward(Tensor output, Tensor target) -> (Tensor, Tensor)");
  // One SGD step of every parameter (torch.optim.SGD's arithmetic); buffers start at zero.
  // zero_grads: then set each gradient to zero in the same pass (saves zero_grad's pass over memory).
  m.def(
      "sgd_step_(Tensor(a!)[] params, Tensor(c!)[] grads, Tensor(b!)[] momentum_buffers, float lr, float momentum, "
      "float weight_decay, bool zero_grads=False) -> ()");
}

// minidl computes its own gradients and never records a graph for torch's autograd: the Autograd
// key falls through to the kernels, instead of running torch's boxed "autograd not implemented"
// fallback, which walks every argument, on every call.
TORCH_LIBRARY_IMPL(minidl, Autograd, m) {
  for (const char* op : {"linear_forward", "linear_backward", "tanh_forward", "tanh_backward", "relu_forward",
                         "relu_backward", "mlp_forward", "mlp_backward", "mse_forward", "sgd_step_"})
    m.impl(op, torch::CppFunction::makeFallthrough());
}
