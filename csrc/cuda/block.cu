// The pool -> batch norm -> ReLU block's ops on CUDA: the CUDA max-pool, batch-norm and ReLU kernels composed
// through the dispatcher (same checks and results as the unfused chain); argmax converts to and from the
// max-pool's plane indices on the device.
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/arange.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "../block_checks.h"
#include "../dispatch.h"
#include "../ops.h"

namespace minidl {
namespace {

template <typename Op>
auto handle() {
  return typed_op<typename Op::Signature>(Op::qualified);
}

// The first element's plane index h * W + w of each window, [1, 1, OH, OW] (Long, on input's device).
at::Tensor window_starts(const at::Tensor& input, int64_t OH, int64_t OW, at::IntArrayRef stride) {
  const auto options = input.options().dtype(at::kLong);
  const at::Tensor rows = at::arange(OH, options).mul_(stride[0] * input.size(3)).view({1, 1, OH, 1});
  const at::Tensor cols = at::arange(OW, options).mul_(stride[1]).view({1, 1, 1, OW});
  return rows.add(cols);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> pool_norm_relu_forward(
    const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride, const at::Tensor& weight,
    const at::Tensor& bias, at::Tensor& running_mean, at::Tensor& running_var, bool training, double momentum,
    double eps) {
  const char* op = "minidl.pool_norm_relu_forward";
  const auto shape = check_pool_norm_relu_forward(input, kernel_size, stride, weight, bias, running_mean, running_var,
                                                  training, momentum, eps, op);
  TORCH_CHECK(input.is_cuda(), op, ": CUDA kernel got a tensor on ", input.device());
  const c10::cuda::CUDAGuard guard(input.device());
  const at::NoGradGuard no_grad;
  static const auto pool = handle<ops::maxpool2d_forward>();
  static const auto norm = handle<ops::batch_norm_forward>();
  static const auto relu = handle<ops::relu_forward>();
  auto [pooled, indices] = pool.call(input, kernel_size, stride);
  auto [z, mean, invstd] = norm.call(pooled, weight, bias, running_mean, running_var, training, momentum, eps);
  at::Tensor output = relu.call(z);
  // position = (index - start) as (i, j): i * kw + j
  const at::Tensor offset = indices.sub(window_starts(input, shape[2], shape[3], stride));
  const at::Tensor position = offset.div(input.size(3), "floor").mul_(kernel_size[1]).add_(offset.remainder(input.size(3)));
  at::Tensor argmax = position.to(at::kByte).contiguous(pooled.suggest_memory_format());
  return {output, pooled, argmax, mean, invstd};
}

at::Tensor pool_norm_relu_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& output,
                                   const at::Tensor& pooled, const at::Tensor& argmax, at::IntArrayRef kernel_size,
                                   at::IntArrayRef stride, const at::Tensor& weight, const at::Tensor& mean,
                                   const at::Tensor& invstd, at::Tensor& grad_weight, at::Tensor& grad_bias,
                                   bool training) {
  const char* op = "minidl.pool_norm_relu_backward";
  check_pool_norm_relu_backward(grad_output, input, output, pooled, argmax, kernel_size, stride, weight, mean, invstd,
                                grad_weight, grad_bias, op);
  TORCH_CHECK(input.is_cuda(), op, ": CUDA kernel got a tensor on ", input.device());
  const c10::cuda::CUDAGuard guard(input.device());
  check_argmax_in_window(argmax, kernel_size, op);  // one synchronisation, for the CPU kernel's error
  const at::NoGradGuard no_grad;
  static const auto relu_back = handle<ops::relu_backward>();
  static const auto norm_back = handle<ops::batch_norm_backward>();
  static const auto pool_back = handle<ops::maxpool2d_backward>();
  const at::Tensor gz = relu_back.call(grad_output, output);
  const at::Tensor gp = norm_back.call(gz, pooled, weight, mean, invstd, grad_weight, grad_bias, training);
  const at::Tensor a = argmax.to(at::kLong);
  const at::Tensor indices = a.div(kernel_size[1], "floor")
                                 .mul_(input.size(3))
                                 .add_(a.remainder(kernel_size[1]))
                                 .add_(window_starts(input, pooled.size(2), pooled.size(3), stride));
  return pool_back.call(gp, input, indices, kernel_size, stride);
}

}  // namespace
}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CUDA, m) {
  m.impl("pool_norm_relu_forward", &minidl::pool_norm_relu_forward);
  m.impl("pool_norm_relu_backward", &minidl::pool_norm_relu_backward);
}
