// Linear layers too small for BLAS to pay off (the disk network's 25x25 at small batches):
// direct loops, with the bias and the activation fused in, and no call into ATen.
#pragma once
#include <ATen/core/Tensor.h>

#include "../activation.h"

namespace minidl {
namespace cpu {

// Whether a layer of this size runs faster here than through BLAS (measured: see README).
bool small_linear_pays(int64_t batch, int64_t in_features, int64_t out_features);

// y = act(x @ W.T + b); contiguous CPU tensors of one floating dtype.
void small_linear_forward(const at::Tensor& x, const at::Tensor& W, const at::Tensor& b, at::Tensor& y,
                          Activation act);

// From g = dL/d(output), overwritten with dL/d(pre-activation): gW += g.T @ x, gb += g.sum(0), and
// gx = g @ W when gx is defined. Contiguous CPU tensors of one floating dtype.
void small_linear_backward(at::Tensor& g, const at::Tensor& y, const at::Tensor& x, const at::Tensor& W,
                           at::Tensor& gW, at::Tensor& gb, at::Tensor& gx, Activation act);

}  // namespace cpu
}  // namespace minidl
