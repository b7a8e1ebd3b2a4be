// BatchNorm's ops on the CPU: checks, the per-channel arithmetic (in double), and the loops of
// cpu/norm.cpp (cuda/norm.cu is the CUDA twin). Outputs keep the input's memory format.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "../cpu/norm.h"
#include "../layer_checks.h"
#include "norm_coefficients.h"

namespace minidl {
namespace {

// The layout the loops walk, and the memory format that gives it (see cpu/norm.h).
cpu::Layout layout_of(const at::Tensor& input, at::MemoryFormat& format) {
  int64_t s = 1;
  for (int64_t d = 2; d < input.dim(); ++d) s *= input.size(d);
  const bool channels_last = input.dim() == 4 && input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  return {input.size(0), input.size(1), s, channels_last || input.dim() == 2};
}

void check_cpu(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.device().is_cpu(), op, ": CPU kernel got a tensor on ", t.device());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_forward(const at::Tensor& input, const at::Tensor& weight,
                                                                  const at::Tensor& bias, at::Tensor& running_mean,
                                                                  at::Tensor& running_var, bool training,
                                                                  double momentum, double eps) {
  const char* op = "minidl.batch_norm_forward";
  check_batch_norm_forward(input, weight, bias, running_mean, running_var, training, momentum, eps, op);
  check_cpu(input, op);
  const at::NoGradGuard no_grad;  // see ops/linear.cpp
  at::MemoryFormat format;
  const cpu::Layout l = layout_of(input, format);
  at::Tensor x = input.contiguous(format);
  at::Tensor y = at::empty(x.sizes(), x.options().memory_format(format));
  std::vector<double> mean, var_sum;
  if (training) cpu::batch_norm_stats(x, l, mean, var_sum);
  const NormCoefficients k = norm_coefficients(mean, var_sum, static_cast<double>(l.count()), weight, bias,
                                               running_mean, running_var, training, momentum, eps);
  if (y.numel() > 0) cpu::batch_norm_apply(x, y, l, k.alpha, k.beta);
  return {y, k.mean, k.invstd};
}

at::Tensor batch_norm_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& mean, const at::Tensor& invstd, at::Tensor& grad_weight,
                               at::Tensor& grad_bias, bool training) {
  const char* op = "minidl.batch_norm_backward";
  check_batch_norm_backward(grad_output, input, weight, mean, invstd, grad_weight, grad_bias, op);
  check_cpu(input, op);
  const at::NoGradGuard no_grad;
  at::MemoryFormat format;
  const cpu::Layout l = layout_of(input, format);
  at::Tensor x = input.contiguous(format), g = grad_output.contiguous(format);
  at::Tensor gi = at::empty(x.sizes(), x.options().memory_format(format));
  at::Tensor m = mean.contiguous();
  std::vector<double> mean_d(l.c), gsum, dot;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_batch_norm_backward", [&] {
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    for (int64_t c = 0; c < l.c; ++c) mean_d[c] = mp[c];
  });
  cpu::batch_norm_grad_sums(g, x, l, mean_d, gsum, dot);
  const NormGradCoefficients k = norm_grad_coefficients(gsum, dot, static_cast<double>(l.count()), weight, invstd,
                                                        grad_weight, grad_bias, training);
  if (gi.numel() > 0) cpu::batch_norm_grad_input(g, x, gi, l, m, k.grad_mean, k.k, k.scale);
  return gi;
}

}  // namespace
}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CPU, m) {
  m.impl("batch_norm_forward", &minidl::batch_norm_forward);
  m.impl("batch_norm_backward", &minidl::batch_norm_backward);
}
