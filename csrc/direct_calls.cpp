// minidl._C.direct: the registered ops called from Python without torch.ops' boxed path.
// torch.ops converts every argument to an IValue, releases and retakes the GIL, and unboxes again:
// ≈ 2 µs a call plus ≈ 0.25 µs per tensor in a list, most of a small network's training step.
// These functions take the tensors straight from pybind11 and call the same op through the
// dispatcher's typed (unboxed) path, as torch's own Python bindings do, so that device dispatch,
// fake tensors and every registered kernel behave exactly as through torch.ops.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/utils/pybind.h>

#include <optional>
#include <tuple>
#include <vector>

#include "direct_calls.h"

namespace minidl {
namespace {

namespace py = pybind11;
using at::Tensor;
using at::TensorList;
using OptTensor = c10::optional<Tensor>;

template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// Kernels that touch more than this many elements run with the GIL released, so that other Python
// threads go on meanwhile; below it, releasing and retaking the GIL would cost more than the kernel.
constexpr int64_t kReleaseGilAbove = 1 << 16;

template <typename F>
auto maybe_without_gil(int64_t elements, F&& f) {
  if (elements <= kReleaseGilAbove) return f();
  py::gil_scoped_release no_gil;
  return f();
}

int64_t numel(TensorList ts) {
  int64_t n = 0;
  for (const Tensor& t : ts) n += t.numel();
  return n;
}

}  // namespace

void add_direct_calls(PyObject* parent) {
  auto m = py::reinterpret_borrow<py::module_>(parent).def_submodule(
      "direct", "The minidl ops, called through the dispatcher without torch.ops' boxing.");

  using LinearForward = Tensor(const Tensor&, const Tensor&, const OptTensor&);
  m.def("linear_forward", [h = op<LinearForward>("minidl::linear_forward")](const Tensor& x, const Tensor& w,
                                                                           const OptTensor& b) {
    return maybe_without_gil(x.numel() + w.numel(), [&] { return h.call(x, w, b); });
  });
  using LinearBackward = Tensor(const Tensor&, const Tensor&, const Tensor&, Tensor&, const OptTensor&);
  m.def("linear_backward", [h = op<LinearBackward>("minidl::linear_backward")](
                               const Tensor& g, const Tensor& x, const Tensor& w, Tensor gw, const OptTensor& gb) {
    return maybe_without_gil(x.numel() + w.numel(), [&] { return h.call(g, x, w, gw, gb); });
  });

  using Unary = Tensor(const Tensor&);
  using Binary = Tensor(const Tensor&, const Tensor&);
  for (const char* name : {"tanh_forward", "relu_forward"}) {
    m.def(name, [h = op<Unary>((std::string("minidl::") + name).c_str())](const Tensor& x) {
      return maybe_without_gil(x.numel(), [&] { return h.call(x); });
    });
  }
  for (const char* name : {"tanh_backward", "relu_backward"}) {
    m.def(name, [h = op<Binary>((std::string("minidl::") + name).c_str())](const Tensor& g, const Tensor& y) {
      return maybe_without_gil(y.numel(), [&] { return h.call(g, y); });
    });
  }

  using MlpForward = std::vector<Tensor>(const Tensor&, TensorList, TensorList, at::IntArrayRef);
  m.def("mlp_forward", [h = op<MlpForward>("minidl::mlp_forward")](const Tensor& x, std::vector<Tensor> ws,
                                                                   std::vector<Tensor> bs, std::vector<int64_t> acts) {
    return maybe_without_gil(x.numel() + numel(ws), [&] { return h.call(x, ws, bs, acts); });
  });
  using MlpBackward = void(const Tensor&, const Tensor&, TensorList, TensorList, TensorList, TensorList,
                           at::IntArrayRef, const OptTensor&);
  m.def("mlp_backward",
        [h = op<MlpBackward>("minidl::mlp_backward")](const Tensor& g, const Tensor& x, std::vector<Tensor> ys,
                                                      std::vector<Tensor> ws, std::vector<Tensor> gws,
                                                      std::vector<Tensor> gbs, std::vector<int64_t> acts,
                                                      const OptTensor& gx) {
          maybe_without_gil(x.numel() + numel(ws), [&] { h.call(g, x, ys, ws, gws, gbs, acts, gx); });
        });

  using MseForward = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&);
  m.def("mse_forward", [h = op<MseForward>("minidl::mse_forward")](const Tensor& y, const Tensor& t) {
    return maybe_without_gil(y.numel(), [&] { return h.call(y, t); });
  });
  using SgdStep = void(TensorList, TensorList, TensorList, double, double, double, bool);
  m.def("sgd_step_", [h = op<SgdStep>("minidl::sgd_step_")](std::vector<Tensor> ps, std::vector<Tensor> gs,
                                                           std::vector<Tensor> vs, double lr, double momentum,
                                                           double weight_decay, bool zero_grads) {
    maybe_without_gil(numel(ps), [&] { h.call(ps, gs, vs, lr, momentum, weight_decay, zero_grads); });
  });
}

}  // namespace minidl
