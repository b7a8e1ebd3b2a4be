// BatchNorm's ops on the CPU: checks, the per-channel arithmetic (in double), and the loops of
// cpu/norm.cpp (cuda/norm.cu is the CUDA twin). Outputs keep the input's memory format.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "../cpu/norm.h"
#include "../layer_checks.h"

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

// 1 / sqrt(var + eps), 0 where both are 0 (as torch).
double inverse_std(double var, double eps) { return var == 0 && eps == 0 ? 0.0 : 1.0 / std::sqrt(var + eps); }

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
  at::Tensor mean_out = at::empty({l.c}, x.options()), invstd_out = at::empty({l.c}, x.options());
  at::Tensor alpha = at::empty({l.c}, x.options()), beta = at::empty({l.c}, x.options());
  std::vector<double> mean, var_sum;
  if (training) cpu::batch_norm_stats(x, l, mean, var_sum);
  const double count = static_cast<double>(l.count());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_batch_norm_forward", [&] {
    scalar_t* rm = running_mean.mutable_data_ptr<scalar_t>();
    scalar_t* rv = running_var.mutable_data_ptr<scalar_t>();
    const int64_t rms = running_mean.stride(0), rvs = running_var.stride(0);
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    const scalar_t* b = bias.const_data_ptr<scalar_t>();
    scalar_t *mo = mean_out.mutable_data_ptr<scalar_t>(), *io = invstd_out.mutable_data_ptr<scalar_t>();
    scalar_t *a = alpha.mutable_data_ptr<scalar_t>(), *be = beta.mutable_data_ptr<scalar_t>();
    for (int64_t c = 0; c < l.c; ++c) {
      double m, invstd;
      if (training) {
        m = mean[c];
        invstd = inverse_std(var_sum[c] / count, eps);
        rm[c * rms] = static_cast<scalar_t>(momentum * m + (1 - momentum) * rm[c * rms]);
        rv[c * rvs] = static_cast<scalar_t>(momentum * (var_sum[c] / (count - 1)) + (1 - momentum) * rv[c * rvs]);
      } else {
        m = rm[c * rms];
        invstd = inverse_std(rv[c * rvs], eps);
      }
      mo[c] = static_cast<scalar_t>(m);
      io[c] = static_cast<scalar_t>(invstd);
      const double scale = invstd * w[c * weight.stride(0)];
      a[c] = static_cast<scalar_t>(scale);
      be[c] = static_cast<scalar_t>(b[c * bias.stride(0)] - m * scale);
    }
  });
  if (y.numel() > 0) cpu::batch_norm_apply(x, y, l, alpha, beta);
  return {y, mean_out, invstd_out};
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
  at::Tensor m = mean.contiguous(), s = invstd.contiguous();
  at::Tensor scale = at::empty({l.c}, x.options());
  at::Tensor grad_mean = training ? at::empty({l.c}, x.options()) : at::Tensor();
  at::Tensor k = training ? at::empty({l.c}, x.options()) : at::Tensor();
  std::vector<double> mean_d(l.c), gsum, dot;
  const double count = static_cast<double>(l.count());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_batch_norm_backward", [&] {
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    for (int64_t c = 0; c < l.c; ++c) mean_d[c] = mp[c];
    cpu::batch_norm_grad_sums(g, x, l, mean_d, gsum, dot);
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    scalar_t* gw = grad_weight.mutable_data_ptr<scalar_t>();
    scalar_t* gb = grad_bias.mutable_data_ptr<scalar_t>();
    scalar_t* sc = scale.mutable_data_ptr<scalar_t>();
    for (int64_t c = 0; c < l.c; ++c) {
      const double is = sp[c];
      gw[c * grad_weight.stride(0)] += static_cast<scalar_t>(dot[c] * is);
      gb[c * grad_bias.stride(0)] += static_cast<scalar_t>(gsum[c]);
      sc[c] = static_cast<scalar_t>(is * w[c * weight.stride(0)]);
      if (training) {
        grad_mean.mutable_data_ptr<scalar_t>()[c] = static_cast<scalar_t>(gsum[c] / count);
        k.mutable_data_ptr<scalar_t>()[c] = static_cast<scalar_t>(dot[c] * is * is / count);
      }
    }
  });
  if (gi.numel() > 0) cpu::batch_norm_grad_input(g, x, gi, l, m, grad_mean, k, scale);
  return gi;
}

}  // namespace
}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CPU, m) {
  m.impl("batch_norm_forward", &minidl::batch_norm_forward);
  m.impl("batch_norm_backward", &minidl::batch_norm_backward);
}
