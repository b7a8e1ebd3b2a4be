// The CUDA kernels of the classification ops, called by ops/classify.cpp after its checks: contiguous
// tensors on one GPU, outputs allocated by the caller; the same arithmetic as cpu/classify.h.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace minidl {
namespace cuda {

// As cpu::cross_entropy_out; a target outside [0, C) is never used as an index: returns false then
// (the outputs are then undefined), after waiting for the kernel.
bool cross_entropy_out(const at::Tensor& logits, const at::Tensor& target, at::Tensor& loss, at::Tensor& grad);
void softmax_out(const at::Tensor& x, at::Tensor& y, int64_t outer, int64_t size, int64_t inner);
void softmax_backward_out(const at::Tensor& g, const at::Tensor& y, at::Tensor& out, int64_t outer, int64_t size,
                          int64_t inner);
void pair_outer_out(const at::Tensor& x, at::Tensor& out);
void pair_outer_backward_out(const at::Tensor& g, const at::Tensor& x, at::Tensor& out);

}  // namespace cuda
}  // namespace minidl
