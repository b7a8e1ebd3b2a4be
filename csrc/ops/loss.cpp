// Mean squared error and its gradient in one pass: loss = mean((o - t)^2), grad = 2 (o - t) / n.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "../checks.h"
#include "../cpu/runtime/block_cache.h"

namespace minidl {

std::tuple<at::Tensor, at::Tensor> mse_forward(const at::Tensor& output, const at::Tensor& target) {
  const char* op = "minidl.mse_forward";
  check_float(output, op, "output");
  check_like(target, output, op, "target", "output");
  check_shape(target, output.sizes(), op, "target");
  const at::NoGradGuard no_grad;  // see ops/linear.cpp
  const int64_t n = output.numel();
  const double scale = 2.0 / static_cast<double>(std::max<int64_t>(n, 1));
  if (!output.is_cpu()) {
    at::Tensor diff = output.sub(target);
    at::Tensor loss = diff.square().mean();
    return {loss, diff.mul_(scale)};
  }
  at::Tensor o = output.contiguous(), t = target.contiguous();
  at::Tensor grad = cpu::empty_output_like(o);
  at::Tensor loss = at::empty({}, o.options());
  AT_DISPATCH_FLOATING_TYPES(o.scalar_type(), "minidl_mse", [&] {
    const scalar_t* op_ = o.const_data_ptr<scalar_t>();
    const scalar_t* tp = t.const_data_ptr<scalar_t>();
    scalar_t* gp = grad.mutable_data_ptr<scalar_t>();
    const scalar_t s = static_cast<scalar_t>(scale);
    // One partial sum per chunk (in double), added in a fixed order: the result does not depend
    // on the number of threads. Not cpu::kGrain: this fixes the rounding, not the threading.
    constexpr int64_t kChunk = 32768;
    std::vector<double> partial((n + kChunk - 1) / kChunk, 0.0);
    at::parallel_for(0, static_cast<int64_t>(partial.size()), 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double sum = 0.0;
        for (int64_t i = c * kChunk, end = std::min(n, (c + 1) * kChunk); i < end; ++i) {
          const scalar_t d = op_[i] - tp[i];
          const scalar_t sq = d * d;  // squared in scalar_t, as torch does: a float32 square may overflow
          sum += static_cast<double>(sq);
          gp[i] = d * s;
        }
        partial[c] = sum;
      }
    });
    double total = 0.0;
    for (double p : partial) total += p;
    // Rounded to scalar_t here: a float32 loss may overflow to inf, which fill_ would refuse.
    *loss.mutable_data_ptr<scalar_t>() =
        static_cast<scalar_t>(n > 0 ? total / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN());
  });
  return {loss, grad};
}

}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CPU, m) { m.impl("mse_forward", &minidl::mse_forward); }
TORCH_LIBRARY_IMPL(minidl, CUDA, m) { m.impl("mse_forward", &minidl::mse_forward); }
