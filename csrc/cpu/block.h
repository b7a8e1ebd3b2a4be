// The loops of the pool -> batch norm -> ReLU block on the CPU (ops/block.cpp), for tensors contiguous in
// NCHW or in channels-last order; the batch-norm statistics are cpu/norm.h's, on the pooled tensor.
#pragma once
#include <ATen/core/Tensor.h>

#include <vector>

#include "norm.h"
#include "pool.h"

namespace minidl {
namespace cpu {

// pooled and argmax (uint8) of the pooled shape: each window's first maximum (a NaN wins) and its position
// i * kw + j in the window.
void pool_argmax(const at::Tensor& x, at::Tensor& pooled, at::Tensor& argmax, Window w, bool channels_last);

// y = relu(pooled * alpha[c] + beta[c]), rounded as batch_norm_apply then relu.
void affine_relu(const at::Tensor& pooled, at::Tensor& y, Layout l, const at::Tensor& alpha, const at::Tensor& beta);

// Per channel, with gz = relu_grad(g, y): sum(gz) and sum(gz * (pooled - mean[c])).
void relu_grad_sums(const at::Tensor& g, const at::Tensor& y, const at::Tensor& pooled, Layout l,
                    const std::vector<double>& mean, std::vector<double>& gsum, std::vector<double>& dot);

// grad_input (written whole): each window's gradient gp = (gz - grad_mean - (pooled - mean) * k) * scale
// (training; gz * scale when k is undefined) added at its argmax, zero elsewhere. [C] tensors contiguous.
void block_grad_input(const at::Tensor& g, const at::Tensor& y, const at::Tensor& pooled, const at::Tensor& argmax,
                      at::Tensor& grad_input, Window w, bool channels_last, const at::Tensor& mean,
                      const at::Tensor& grad_mean, const at::Tensor& k, const at::Tensor& scale);

}  // namespace cpu
}  // namespace minidl
