// The pool -> batch norm -> ReLU block's ops on the CPU: checks, the per-channel arithmetic of
// ops/norm_coefficients.h, and the loops of cpu/block.cpp (cuda/block.cu is the CUDA twin). Outputs keep the
// input's memory format, as the unfused chain's do.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "../block_checks.h"
#include "../cpu/block.h"
#include "../cpu/runtime/block_cache.h"
#include "norm_coefficients.h"

namespace minidl {
namespace {

bool is_channels_last(const at::Tensor& input) {
  return input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
}

void check_cpu(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.device().is_cpu(), op, ": CPU kernel got a tensor on ", t.device());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> pool_norm_relu_forward(
    const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride, const at::Tensor& weight,
    const at::Tensor& bias, at::Tensor& running_mean, at::Tensor& running_var, bool training, double momentum,
    double eps) {
  const char* op = "minidl.pool_norm_relu_forward";
  const auto shape = check_pool_norm_relu_forward(input, kernel_size, stride, weight, bias, running_mean, running_var,
                                                  training, momentum, eps, op);
  check_cpu(input, op);
  const at::NoGradGuard no_grad;  // see ops/linear.cpp
  const bool channels_last = is_channels_last(input);
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor x = input.contiguous(format);
  at::Tensor pooled = cpu::empty_output(shape, x.options(), format);
  at::Tensor argmax = cpu::empty_output(shape, x.options().dtype(at::kByte), format);
  at::Tensor output = cpu::empty_output(shape, x.options(), format);
  const cpu::Layout l{shape[0], shape[1], shape[2] * shape[3], channels_last};
  const cpu::Window w{kernel_size[0], kernel_size[1], stride[0], stride[1]};
  if (pooled.numel() > 0) cpu::pool_argmax(x, pooled, argmax, w, channels_last);
  std::vector<double> mean, var_sum;
  if (training) cpu::batch_norm_stats(pooled, l, mean, var_sum);
  const NormCoefficients k = norm_coefficients(mean, var_sum, static_cast<double>(l.count()), weight, bias,
                                               running_mean, running_var, training, momentum, eps);
  if (output.numel() > 0) cpu::affine_relu(pooled, output, l, k.alpha, k.beta);
  return {output, pooled, argmax, k.mean, k.invstd};
}

at::Tensor pool_norm_relu_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& output,
                                   const at::Tensor& pooled, const at::Tensor& argmax, at::IntArrayRef kernel_size,
                                   at::IntArrayRef stride, const at::Tensor& weight, const at::Tensor& mean,
                                   const at::Tensor& invstd, at::Tensor& grad_weight, at::Tensor& grad_bias,
                                   bool training) {
  const char* op = "minidl.pool_norm_relu_backward";
  check_pool_norm_relu_backward(grad_output, input, output, pooled, argmax, kernel_size, stride, weight, mean, invstd,
                                grad_weight, grad_bias, op);
  check_cpu(input, op);
  check_argmax_in_window(argmax, kernel_size, op);
  const at::NoGradGuard no_grad;
  const bool channels_last = is_channels_last(input);
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor g = grad_output.contiguous(format), y = output.contiguous(format), p = pooled.contiguous(format);
  const at::Tensor a = argmax.contiguous(format), m = mean.contiguous();
  at::Tensor grad_input = cpu::empty_output(input.sizes(), input.options(), format);
  const cpu::Layout l{g.size(0), g.size(1), g.size(2) * g.size(3), channels_last};
  std::vector<double> mean_d(l.c), gsum, dot;
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "minidl_pool_norm_relu_backward", [&] {
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    for (int64_t c = 0; c < l.c; ++c) mean_d[c] = mp[c];
  });
  cpu::relu_grad_sums(g, y, p, l, mean_d, gsum, dot);
  const NormGradCoefficients k = norm_grad_coefficients(gsum, dot, static_cast<double>(l.count()), weight, invstd,
                                                        grad_weight, grad_bias, training);
  if (grad_input.numel() == 0) return grad_input;
  const cpu::Window w{kernel_size[0], kernel_size[1], stride[0], stride[1]};
  cpu::block_grad_input(g, y, p, a, grad_input, w, channels_last, m, k.grad_mean, k.k, k.scale);
  return grad_input;
}

}  // namespace
}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CPU, m) {
  m.impl("pool_norm_relu_forward", &minidl::pool_norm_relu_forward);
  m.impl("pool_norm_relu_backward", &minidl::pool_norm_relu_backward);
}
