// The per-element formulas of ReLU and of the activations' backward, shared by the cached loops
// (activations.cpp) and the streaming ones (streaming.cpp), so both compute the same bits.
#pragma once

#include "../clones.h"

namespace minidl {
namespace cpu {

// `x < 0 ? 0 : x` rather than max(x, 0): NaN propagates, as in torch.relu.
template <typename T>
MINIDL_INLINE T relu_value(T x) {
  return x < T(0) ? T(0) : x;
}

// `y <= 0 ? 0 : g` as torch's threshold_backward: the gradient passes where y is NaN.
template <typename T>
MINIDL_INLINE T relu_grad(T g, T y) {
  return y <= T(0) ? T(0) : g;
}

// d tanh(x)/dx from the output y = tanh(x); rounded as written (the build forbids fused multiply-adds).
template <typename T>
MINIDL_INLINE T tanh_grad(T g, T y) {
  return g * (T(1) - y * y);
}

}  // namespace cpu
}  // namespace minidl
