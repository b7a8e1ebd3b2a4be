// minidl._C.direct: the registered ops called from Python without torch.ops' boxed path.
// torch.ops converts every argument to an IValue, releases and retakes the GIL, and unboxes again,
// which makes a call about twice as costly (`python -m minidl.bench --sections calls`); calls are
// most of a small network's training step.
// These functions take the tensors straight from pybind11 and call the same op through the
// dispatcher's typed (unboxed) path, as torch's own Python bindings do, so that everything below
// the dispatcher (device dispatch, fake and meta tensors, __torch_dispatch__, every registered
// kernel) behaves as through torch.ops; __torch_function__ modes and overrides are not consulted.
#include <torch/csrc/utils/pybind.h>

#include <cstring>
#include <tuple>
#include <vector>

#include "direct_calls.h"
#include "dispatch.h"

namespace minidl {
namespace {

namespace py = pybind11;
using at::Tensor;
using at::TensorList;
using OptTensor = c10::optional<Tensor>;

// Kernels that touch more than this many elements run with the GIL released, so that other Python
// threads go on meanwhile; below it, releasing and retaking the GIL would cost more than the kernel.
constexpr int64_t kReleaseGilAbove = 1 << 16;

template <typename F>
auto maybe_without_gil(int64_t elements, F&& f) {
  if (elements <= kReleaseGilAbove) return f();
  py::gil_scoped_release no_gil;
  return f();
}

// minidl._C.direct.<op>, named "minidl.<op>": a call with arguments of the wrong types then fails
// with a TypeError that names the op and lists the expected argument types.
template <typename F, typename... Extra>
void def(py::module_& m, const char* qualified_name, F&& f, const Extra&... extra) {
  const char* attr = qualified_name + std::strlen("minidl.");
  m.add_object(attr, py::cpp_function(std::forward<F>(f), py::name(qualified_name), py::scope(m), extra...));
}

// Elements of a tensor, or 0 when its sizes are symbolic (tracing): such calls keep the GIL.
int64_t elements(const Tensor& t) { return t.sym_numel().maybe_as_int().value_or(0); }

int64_t elements(TensorList ts) {
  int64_t n = 0;
  for (const Tensor& t : ts) n += elements(t);
  return n;
}

}  // namespace

void add_direct_calls(PyObject* parent) {
  auto m = py::reinterpret_borrow<py::module_>(parent).def_submodule(
      "direct", "The minidl ops, called through the dispatcher without torch.ops' boxing.");
  using py::arg;

  using LinearForward = Tensor(const Tensor&, const Tensor&, const OptTensor&);
  def(m, "minidl.linear_forward",
      [h = typed_op<LinearForward>("minidl::linear_forward")](const Tensor& x, const Tensor& w, const OptTensor& b) {
        return maybe_without_gil(elements(x) + elements(w), [&] { return h.call(x, w, b); });
      },
      arg("input"), arg("weight"), arg("bias").none(true));
  using LinearBackward = Tensor(const Tensor&, const Tensor&, const Tensor&, Tensor&, const OptTensor&);
  def(m, "minidl.linear_backward",
      [h = typed_op<LinearBackward>("minidl::linear_backward")](const Tensor& g, const Tensor& x, const Tensor& w,
                                                          Tensor gw, const OptTensor& gb) {
        return maybe_without_gil(elements(x) + elements(w), [&] { return h.call(g, x, w, gw, gb); });
      },
      arg("grad_output"), arg("input"), arg("weight"), arg("grad_weight"), arg("grad_bias").none(true));

  using Unary = Tensor(const Tensor&);
  auto unary = [](const char* name) {
    return [h = typed_op<Unary>(name)](const Tensor& x) { return maybe_without_gil(elements(x), [&] { return h.call(x); }); };
  };
  def(m, "minidl.tanh_forward", unary("minidl::tanh_forward"), arg("input"));
  def(m, "minidl.relu_forward", unary("minidl::relu_forward"), arg("input"));
  using Binary = Tensor(const Tensor&, const Tensor&);
  auto binary = [](const char* name) {
    return [h = typed_op<Binary>(name)](const Tensor& g, const Tensor& y) {
      return maybe_without_gil(elements(y), [&] { return h.call(g, y); });
    };
  };
  def(m, "minidl.tanh_backward", binary("minidl::tanh_backward"), arg("grad_output"), arg("output"));
  def(m, "minidl.relu_backward", binary("minidl::relu_backward"), arg("grad_output"), arg("output"));

  using MlpForward = std::vector<Tensor>(const Tensor&, TensorList, TensorList, at::IntArrayRef);
  def(m, "minidl.mlp_forward",
      [h = typed_op<MlpForward>("minidl::mlp_forward")](const Tensor& x, std::vector<Tensor> ws, std::vector<Tensor> bs,
                                                  std::vector<int64_t> acts) {
        return maybe_without_gil(elements(x) + elements(ws), [&] { return h.call(x, ws, bs, acts); });
      },
      arg("input"), arg("weights"), arg("biases"), arg("activations"));
  using MlpBackward = void(const Tensor&, const Tensor&, TensorList, TensorList, TensorList, TensorList,
                           at::IntArrayRef, const OptTensor&);
  def(m, "minidl.mlp_backward",
      [h = typed_op<MlpBackward>("minidl::mlp_backward")](const Tensor& g, const Tensor& x, std::vector<Tensor> ys,
                                                    std::vector<Tensor> ws, std::vector<Tensor> gws,
                                                    std::vector<Tensor> gbs, std::vector<int64_t> acts,
                                                    const OptTensor& gx) {
        maybe_without_gil(elements(x) + elements(ws), [&] { h.call(g, x, ys, ws, gws, gbs, acts, gx); });
      },
      arg("grad_output"), arg("input"), arg("outputs"), arg("weights"), arg("grad_weights"), arg("grad_biases"),
      arg("activations"), arg("grad_input").none(true));

  using MseForward = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&);
  def(m, "minidl.mse_forward",
      [h = typed_op<MseForward>("minidl::mse_forward")](const Tensor& y, const Tensor& t) {
        return maybe_without_gil(elements(y), [&] { return h.call(y, t); });
      },
      arg("output"), arg("target"));
  using SgdStep = void(TensorList, TensorList, TensorList, double, double, double, bool);
  def(m, "minidl.sgd_step_",
      [h = typed_op<SgdStep>("minidl::sgd_step_")](std::vector<Tensor> ps, std::vector<Tensor> gs, std::vector<Tensor> vs,
                                             double lr, double momentum, double weight_decay, bool zero_grads) {
        maybe_without_gil(elements(ps), [&] { h.call(ps, gs, vs, lr, momentum, weight_decay, zero_grads); });
      },
      arg("params"), arg("grads"), arg("momentum_buffers"), arg("lr"), arg("momentum"), arg("weight_decay"),
      arg("zero_grads") = false);
}

}  // namespace minidl
