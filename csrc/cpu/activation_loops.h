// CPU activations into a given (possibly the same) tensor, for the fused ops: contiguous tensors, no checks.
#pragma once
#include <ATen/core/Tensor.h>

#include "../activation.h"

namespace minidl {
namespace cpu {

// y = act(x); y may be x.
void activation_out(const at::Tensor& x, at::Tensor& y, Activation act);
// y = act(y + b), b broadcast along the rows of a contiguous [rows, cols] y.
void bias_activation_(at::Tensor& y, const at::Tensor& b, Activation act);
// out = grad * act'(from the saved output y); out may be grad.
void activation_backward_out(const at::Tensor& grad, const at::Tensor& y, at::Tensor& out, Activation act);
// Whether the loops above write a new float32 output of `like`'s size with streaming stores
// (streaming.cpp); an output that overwrites an input never streams.
bool new_output_streams(const at::Tensor& like);
// activation_backward_out (out may be grad), and grad_bias += out.sum(0) in the same pass, rows
// added in order: contiguous [rows, cols] tensors, act not None, no streaming stores; grad_bias
// must not share memory with grad, y or out.
void activation_backward_column_sums_(const at::Tensor& grad, const at::Tensor& y, at::Tensor& out, Activation act,
                                      at::Tensor& grad_bias);

}  // namespace cpu
}  // namespace minidl
