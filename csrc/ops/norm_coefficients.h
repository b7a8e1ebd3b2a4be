// Batch norm's per-channel arithmetic (in double) on the CPU, shared by ops/norm.cpp and ops/block.cpp: the
// statistics and running-statistics update of the forward, the parameter gradients of the backward.
#pragma once
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cmath>
#include <vector>

namespace minidl {

// 1 / sqrt(var + eps), 0 where both are 0: torch's rule for batch statistics, here for running ones too (torch's
// evaluation divides by zero there: inf or NaN outputs; here the output is the bias).
inline double inverse_std(double var, double eps) { return var == 0 && eps == 0 ? 0.0 : 1.0 / std::sqrt(var + eps); }

// The forward's per-channel tensors ([C], of weight's dtype): the mean and invstd used (saved for the backward)
// and y = x * alpha + beta.
struct NormCoefficients {
  at::Tensor mean, invstd, alpha, beta;
};

// training: the batch's mean and var_sum (sum of squared deviations) over `count` values per channel, the
// running statistics updated with momentum (unbiased variance); else the running statistics.
inline NormCoefficients norm_coefficients(const std::vector<double>& mean, const std::vector<double>& var_sum,
                                          double count, const at::Tensor& weight, const at::Tensor& bias,
                                          at::Tensor& running_mean, at::Tensor& running_var, bool training,
                                          double momentum, double eps) {
  const int64_t C = weight.size(0);
  const auto options = weight.options();
  NormCoefficients r{at::empty({C}, options), at::empty({C}, options), at::empty({C}, options),
                     at::empty({C}, options)};
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "minidl_norm_coefficients", [&] {
    scalar_t* rm = running_mean.mutable_data_ptr<scalar_t>();
    scalar_t* rv = running_var.mutable_data_ptr<scalar_t>();
    const int64_t rms = running_mean.stride(0), rvs = running_var.stride(0);
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    const scalar_t* b = bias.const_data_ptr<scalar_t>();
    scalar_t *mo = r.mean.mutable_data_ptr<scalar_t>(), *io = r.invstd.mutable_data_ptr<scalar_t>();
    scalar_t *a = r.alpha.mutable_data_ptr<scalar_t>(), *be = r.beta.mutable_data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) {
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
  return r;
}

// The backward's per-channel tensors ([C]): grad_input = (g - grad_mean - (x - mean) * k) * scale in training,
// g * scale else (grad_mean and k undefined).
struct NormGradCoefficients {
  at::Tensor scale, grad_mean, k;
};

// From gsum = sum(g) and dot = sum(g * (x - mean)) per channel over `count` values; adds the weight and bias
// gradients into grad_weight and grad_bias.
inline NormGradCoefficients norm_grad_coefficients(const std::vector<double>& gsum, const std::vector<double>& dot,
                                                   double count, const at::Tensor& weight, const at::Tensor& invstd,
                                                   at::Tensor& grad_weight, at::Tensor& grad_bias, bool training) {
  const int64_t C = weight.size(0);
  const auto options = weight.options();
  NormGradCoefficients r{at::empty({C}, options), training ? at::empty({C}, options) : at::Tensor(),
                         training ? at::empty({C}, options) : at::Tensor()};
  const at::Tensor s = invstd.contiguous();
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "minidl_norm_grad_coefficients", [&] {
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    scalar_t* gw = grad_weight.mutable_data_ptr<scalar_t>();
    scalar_t* gb = grad_bias.mutable_data_ptr<scalar_t>();
    scalar_t* sc = r.scale.mutable_data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) {
      const double is = sp[c];
      gw[c * grad_weight.stride(0)] += static_cast<scalar_t>(dot[c] * is);
      gb[c * grad_bias.stride(0)] += static_cast<scalar_t>(gsum[c]);
      sc[c] = static_cast<scalar_t>(is * w[c * weight.stride(0)]);
      if (training) {
        r.grad_mean.mutable_data_ptr<scalar_t>()[c] = static_cast<scalar_t>(gsum[c] / count);
        r.k.mutable_data_ptr<scalar_t>()[c] = static_cast<scalar_t>(dot[c] * is * is / count);
      }
    }
  });
  return r;
}

}  // namespace minidl
