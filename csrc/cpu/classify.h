// The CPU loops of the classification ops (ops/classify.cpp checks the arguments first): contiguous
// tensors, outputs allocated by the caller, every row independent of the others, so the results do
// not depend on the number of threads.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace minidl {
namespace cpu {

// loss (0-dim) = mean over rows of logsumexp(logits) - logits[target]; grad = (softmax - onehot) / N.
// logits [N, C], target [N] of int64 within [0, C).
void cross_entropy_out(const at::Tensor& logits, const at::Tensor& target, at::Tensor& loss, at::Tensor& grad);
// y = softmax(x) along the middle dimension of x seen as [outer, size, inner].
void softmax_out(const at::Tensor& x, at::Tensor& y, int64_t outer, int64_t size, int64_t inner);
// out = y * (g - sum(g * y)) along the middle dimension of [outer, size, inner].
void softmax_backward_out(const at::Tensor& g, const at::Tensor& y, at::Tensor& out, int64_t outer, int64_t size,
                          int64_t inner);
// out[n, i, j] = x[n, 0, i] * x[n, 1, j]; x [N, 2, K], out [N, K, K].
void pair_outer_out(const at::Tensor& x, at::Tensor& out);
// out[n, 0, i] = sum_j g[n, i, j] x[n, 1, j], out[n, 1, j] = sum_i g[n, i, j] x[n, 0, i].
void pair_outer_backward_out(const at::Tensor& g, const at::Tensor& x, at::Tensor& out);

}  // namespace cpu
}  // namespace minidl
