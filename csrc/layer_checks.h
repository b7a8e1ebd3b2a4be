// Input validation of the layer ops (max-pool, batch norm, dropout), shared by their CPU and CUDA
// kernels; the twin of src/minidl/kernels/checks/layer.py, with the same messages.
#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <array>
#include <cmath>
#include <optional>

#include "checks.h"

namespace minidl {

// A window argument (kernel_size, stride): two positive ints.
inline void check_pair(at::IntArrayRef v, const char* op, const char* name) {
  TORCH_CHECK_VALUE(v.size() == 2 && v[0] > 0 && v[1] > 0, op, ": expected ", name,
                    " to be two positive ints, got ", v);
}

// The output's [N, C, OH, OW] of a max-pool of input [N, C, H, W].
inline std::array<int64_t, 4> check_maxpool2d(const at::Tensor& input, at::IntArrayRef kernel_size,
                                              at::IntArrayRef stride, const char* op) {
  check_float(input, op, "input");
  check_dim(input, 4, op, "input");
  check_pair(kernel_size, op, "kernel_size");
  check_pair(stride, op, "stride");
  TORCH_CHECK_VALUE(input.size(2) >= kernel_size[0] && input.size(3) >= kernel_size[1], op,
                    ": expected input of at least kernel_size ", kernel_size, " in its last two dimensions, got shape ",
                    input.sizes());
  return {input.size(0), input.size(1), (input.size(2) - kernel_size[0]) / stride[0] + 1,
          (input.size(3) - kernel_size[1]) / stride[1] + 1};
}

// Max-pooling's saved positions (indices, argmax): on input's device, of dtype and shape.
inline void check_positions(const at::Tensor& t, const at::Tensor& input, at::IntArrayRef shape, at::ScalarType dtype,
                            const char* op, const char* name) {
  TORCH_CHECK(t.device() == input.device(), op, ": expected ", name, " on ", input.device(), " like input, got ",
              t.device());
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, op, ": expected ", name, " of dtype ", dtype, ", got ", t.scalar_type());
  check_shape(t, shape, op, name);
}

inline void check_maxpool2d_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& indices,
                                     at::IntArrayRef kernel_size, at::IntArrayRef stride, const char* op) {
  const auto shape = check_maxpool2d(input, kernel_size, stride, op);
  check_like(grad_output, input, op, "grad_output", "input");
  check_shape(grad_output, shape, op, "grad_output");
  check_positions(indices, input, shape, at::kLong, op, "indices");
}

// weight, bias and the like: [C] of input's dtype and device.
inline void check_per_channel(const at::Tensor& t, const at::Tensor& input, const char* op, const char* name) {
  check_like(t, input, op, name, "input");
  check_shape(t, {input.size(1)}, op, name);
}

inline void check_batch_norm_input(const at::Tensor& input, const char* op) {
  check_float(input, op, "input");
  TORCH_CHECK_VALUE(input.dim() >= 2 && input.dim() <= 4, op,
                    ": expected input of shape [N, C], [N, C, L] or [N, C, H, W], got ", input.sizes());
}

inline void check_batch_norm_forward(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                                     const at::Tensor& running_mean, const at::Tensor& running_var, bool training,
                                     double momentum, double eps, const char* op) {
  check_batch_norm_input(input, op);
  check_per_channel(weight, input, op, "weight");
  check_per_channel(bias, input, op, "bias");
  check_per_channel(running_mean, input, op, "running_mean");
  check_per_channel(running_var, input, op, "running_var");
  TORCH_CHECK_VALUE(eps >= 0 && std::isfinite(eps), op, ": expected eps >= 0, got ", eps);
  TORCH_CHECK_VALUE(std::isfinite(momentum), op, ": expected a finite momentum, got ", momentum);
  int64_t per_channel = input.size(0);
  for (int64_t d = 2; d < input.dim(); ++d) per_channel *= input.size(d);
  TORCH_CHECK_VALUE(!training || per_channel > 1, op,
                    ": expected more than 1 value per channel when training, got input of shape ", input.sizes());
  if (training) {  // the running statistics are updated
    check_written(running_mean, op, "running_mean");
    check_written(running_var, op, "running_var");
    check_apart({{&running_mean, "running_mean"}, {&running_var, "running_var"}},
                {{&input, "input"}, {&weight, "weight"}, {&bias, "bias"}}, op);
  }
}

inline void check_batch_norm_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                                      const at::Tensor& mean, const at::Tensor& invstd, const at::Tensor& grad_weight,
                                      const at::Tensor& grad_bias, const char* op) {
  check_batch_norm_input(input, op);
  check_like(grad_output, input, op, "grad_output", "input");
  check_shape(grad_output, input.sizes(), op, "grad_output");
  check_per_channel(weight, input, op, "weight");
  check_per_channel(mean, input, op, "mean");
  check_per_channel(invstd, input, op, "invstd");
  check_per_channel(grad_weight, input, op, "grad_weight");
  check_per_channel(grad_bias, input, op, "grad_bias");
  check_written(grad_weight, op, "grad_weight");
  check_written(grad_bias, op, "grad_bias");
  check_apart({{&grad_weight, "grad_weight"}, {&grad_bias, "grad_bias"}},
              {{&grad_output, "grad_output"}, {&input, "input"}, {&weight, "weight"}, {&mean, "mean"},
               {&invstd, "invstd"}},
              op);
}

inline void check_dropout(const at::Tensor& input, double p, const std::optional<at::Generator>& generator,
                          const char* op) {
  check_float(input, op, "input");
  TORCH_CHECK_VALUE(p >= 0 && p <= 1, op, ": expected p between 0 and 1, got ", p);
  TORCH_CHECK(!generator.has_value() || !generator->defined() || generator->device().type() == input.device().type(),
              op, ": expected a generator on ", input.device().type(), " like input, got one on ",
              generator.has_value() && generator->defined() ? generator->device() : input.device());
}

}  // namespace minidl
