// Batch-norm loops on the CPU. A tensor [N, C, *] is walked in one of two layouts: planes (N, C, S),
// NCHW-contiguous, or rows (N * S rows of C), channels-last (and [N, C]). Sums are in double, in an
// order fixed by the shape alone: the results do not depend on the number of threads.
#pragma once
#include <ATen/core/Tensor.h>

#include <vector>

namespace minidl {
namespace cpu {

struct Layout {
  int64_t n, c, s;  // batch, channels, spatial elements per channel and sample
  bool rows;        // channels innermost (channels-last, or 2-D)
  int64_t count() const { return n * s; }  // elements per channel
};

// Per channel: the mean and the sum of squared deviations from it.
void batch_norm_stats(const at::Tensor& x, Layout l, std::vector<double>& mean, std::vector<double>& var_sum);

// y = x * alpha[c] + beta[c]; alpha and beta [C] contiguous, of x's dtype.
void batch_norm_apply(const at::Tensor& x, at::Tensor& y, Layout l, const at::Tensor& alpha, const at::Tensor& beta);

// Per channel: sum(g) and sum(g * (x - mean[c])).
void batch_norm_grad_sums(const at::Tensor& g, const at::Tensor& x, Layout l, const std::vector<double>& mean,
                          std::vector<double>& gsum, std::vector<double>& dot);

// gi = (g - grad_mean[c] - (x - mean[c]) * k[c]) * invstd[c] * w[c] (training), or g * invstd[c] * w[c] (k
// undefined). [C] tensors contiguous, of x's dtype.
void batch_norm_grad_input(const at::Tensor& g, const at::Tensor& x, at::Tensor& gi, Layout l, const at::Tensor& mean,
                           const at::Tensor& grad_mean, const at::Tensor& k, const at::Tensor& scale);

}  // namespace cpu
}  // namespace minidl
