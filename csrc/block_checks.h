// Input validation of the pool -> batch norm -> ReLU block ops, shared by their CPU and CUDA kernels;
// the twin of src/minidl/kernels/checks/block.py, with the same messages.
#pragma once
#include <ATen/core/Tensor.h>

#include <array>

#include "layer_checks.h"

namespace minidl {

// The pooled shape [N, C, OH, OW]; the batch-norm checks run on it, as the unfused chain's would.
inline std::array<int64_t, 4> check_pool_norm_relu_forward(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                           at::IntArrayRef stride, const at::Tensor& weight,
                                                           const at::Tensor& bias, const at::Tensor& running_mean,
                                                           const at::Tensor& running_var, bool training,
                                                           double momentum, double eps, const char* op) {
  const auto shape = check_maxpool2d(input, kernel_size, stride, op);
  TORCH_CHECK_VALUE(kernel_size[0] * kernel_size[1] <= 256, op,
                    ": expected a window of at most 256 elements (argmax is uint8), got kernel_size ", kernel_size);
  check_per_channel(weight, input, op, "weight");
  check_per_channel(bias, input, op, "bias");
  check_per_channel(running_mean, input, op, "running_mean");
  check_per_channel(running_var, input, op, "running_var");
  TORCH_CHECK_VALUE(eps >= 0 && std::isfinite(eps), op, ": expected eps >= 0, got ", eps);
  TORCH_CHECK_VALUE(std::isfinite(momentum), op, ": expected a finite momentum, got ", momentum);
  TORCH_CHECK_VALUE(!training || shape[0] * shape[2] * shape[3] > 1, op,
                    ": expected more than 1 value per channel when training, got pooled shape ",
                    at::IntArrayRef(shape), " from input of shape ", input.sizes());
  if (training) {  // the running statistics are updated
    check_written(running_mean, op, "running_mean");
    check_written(running_var, op, "running_var");
    check_apart({{&running_mean, "running_mean"}, {&running_var, "running_var"}},
                {{&input, "input"}, {&weight, "weight"}, {&bias, "bias"}}, op);
  }
  return shape;
}

inline void check_pool_norm_relu_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                          const at::Tensor& output, const at::Tensor& pooled, const at::Tensor& argmax,
                                          at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                          const at::Tensor& weight, const at::Tensor& mean, const at::Tensor& invstd,
                                          const at::Tensor& grad_weight, const at::Tensor& grad_bias, const char* op) {
  const auto shape = check_maxpool2d(input, kernel_size, stride, op);
  check_like(grad_output, input, op, "grad_output", "input");
  check_shape(grad_output, shape, op, "grad_output");
  check_like(output, input, op, "output", "input");
  check_shape(output, shape, op, "output");
  check_like(pooled, input, op, "pooled", "input");
  check_shape(pooled, shape, op, "pooled");
  check_positions(argmax, input, shape, at::kByte, op, "argmax");
  check_per_channel(weight, input, op, "weight");
  check_per_channel(mean, input, op, "mean");
  check_per_channel(invstd, input, op, "invstd");
  check_per_channel(grad_weight, input, op, "grad_weight");
  check_per_channel(grad_bias, input, op, "grad_bias");
  check_written(grad_weight, op, "grad_weight");
  check_written(grad_bias, op, "grad_bias");
  check_apart({{&grad_weight, "grad_weight"}, {&grad_bias, "grad_bias"}},
              {{&grad_output, "grad_output"}, {&input, "input"}, {&output, "output"}, {&pooled, "pooled"},
               {&argmax, "argmax"}, {&weight, "weight"}, {&mean, "mean"}, {&invstd, "invstd"}},
              op);
}

// The one check that reads data, so the kernels call it and the shape functions do not: a position outside
// the window would read or write out of bounds. Before any write, so a refused call changes nothing.
// Its Python twin is in kernels/python/block.py.
inline void check_argmax_in_window(const at::Tensor& argmax, at::IntArrayRef kernel_size, const char* op) {
  if (argmax.numel() == 0) return;
  const int top = argmax.amax().item<uint8_t>();
  TORCH_CHECK_INDEX(top < kernel_size[0] * kernel_size[1], op, ": expected argmax in [0, ",
                    kernel_size[0] * kernel_size[1], ") for kernel_size ", kernel_size, ", got ", top);
}

}  // namespace minidl
