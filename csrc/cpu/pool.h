// Max-pool loops on the CPU, for inputs contiguous in NCHW or in channels-last (NHWC) order.
#pragma once
#include <ATen/core/Tensor.h>

#include "runtime/clones.h"

namespace minidl {
namespace cpu {

struct Window {
  int64_t kh, kw, sh, sw;
};

// Whether v replaces the running maximum m: larger, or NaN (which then stays, unless another NaN follows).
template <typename T>
MINIDL_INLINE bool takes(T v, T m) {
  return (v > m) | (v != v);
}

// out and indices (Long) of the output's shape, in the input's memory order; each window's first
// maximum, a NaN replacing it (as torch's max_pool2d), and its index h * W + w in its plane.
void maxpool2d_forward_out(const at::Tensor& x, at::Tensor& out, at::Tensor& indices, Window w, bool channels_last);

// grad_input (zeroed here) += grad_output at the saved indices; all three in one memory order. Returns
// false, before writing anything more, at an index outside its plane.
bool maxpool2d_backward_out(const at::Tensor& grad_output, const at::Tensor& indices, at::Tensor& grad_input,
                            bool channels_last);

}  // namespace cpu
}  // namespace minidl
