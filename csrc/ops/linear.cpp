// Linear forward and backward through ATen's BLAS-backed calls (MKL/OpenBLAS on CPU, cuBLAS on
// CUDA): the same code serves both dispatch keys.
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include "../checks.h"

namespace minidl {

at::Tensor linear_forward(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  const char* op = "minidl.linear_forward";
  check_linear(input, weight, op);
  // Kernels may be called with grad mode on (not_recorded.h lets through only inputs that don't
  // require grad); the ATen calls below then record nothing and take their out= and in-place forms.
  const at::NoGradGuard no_grad;
  if (!bias.has_value()) return at::mm(input, weight.t());
  check_like(*bias, weight, op, "bias", "weight");
  check_shape(*bias, {weight.size(0)}, op, "bias");
  return at::addmm(*bias, input, weight.t());
}

at::Tensor linear_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                           at::Tensor& grad_weight, const c10::optional<at::Tensor>& grad_bias) {
  const char* op = "minidl.linear_backward";
  check_linear(input, weight, op);
  check_like(grad_output, weight, op, "grad_output", "weight");
  check_shape(grad_output, {input.size(0), weight.size(0)}, op, "grad_output");
  check_like(grad_weight, weight, op, "grad_weight", "weight");
  check_shape(grad_weight, weight.sizes(), op, "grad_weight");
  if (grad_bias.has_value()) {  // every check before the first write: a bad call changes nothing
    check_like(*grad_bias, weight, op, "grad_bias", "weight");
    check_shape(*grad_bias, {weight.size(0)}, op, "grad_bias");
  }
  check_written(grad_weight, op, "grad_weight");
  if (grad_bias.has_value()) check_written(*grad_bias, op, "grad_bias");
  check_apart({{&grad_weight, "grad_weight"}, {grad_bias.has_value() ? &*grad_bias : nullptr, "grad_bias"}},
              {{&grad_output, "grad_output"}, {&input, "input"}, {&weight, "weight"}}, op);
  const at::NoGradGuard no_grad;  // see linear_forward
  // Accumulate in place: no temporary for the weight gradient.
  grad_weight.addmm_(grad_output.t(), input);
  if (grad_bias.has_value()) {
    at::Tensor gb = *grad_bias;
    gb.add_(grad_output.sum(0));
  }
  return at::mm(grad_output, weight);
}

}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CPU, m) {
  m.impl("linear_forward", &minidl::linear_forward);
  m.impl("linear_backward", &minidl::linear_backward);
}

TORCH_LIBRARY_IMPL(minidl, CUDA, m) {
  m.impl("linear_forward", &minidl::linear_forward);
  m.impl("linear_backward", &minidl::linear_backward);
}
