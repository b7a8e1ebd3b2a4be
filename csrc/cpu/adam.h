// The CPU loop of minidl.adam_step_: contiguous CPU tensors, checked by the caller.
#pragma once
#include <ATen/core/Tensor.h>

#include "../ops/adam.h"

namespace minidl {
namespace cpu {

// One Adam step of one parameter in a single pass over its memory; zero_grad also sets the gradient to zero.
void adam_step_contiguous(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                          const at::Tensor& exp_avg_sq, const AdamScalars& s, bool zero_grad);

}  // namespace cpu
}  // namespace minidl
