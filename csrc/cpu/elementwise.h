// The per-element formulas of ReLU and of the activations' backward, shared by the cached loops
// (activation_loops.cpp) and the streaming ones (runtime/streaming.cpp), so both compute the same bits; the
// ReLU ones also by the CUDA kernels (cuda/activation.cu), hence C10_HOST_DEVICE.
#pragma once

#include "runtime/clones.h"

namespace minidl {
namespace cpu {

// `x < 0 ? 0 : x` rather than max(x, 0): NaN propagates, as in torch.relu.
template <typename T>
MINIDL_INLINE C10_HOST_DEVICE T relu_value(T x) {
  return x < T(0) ? T(0) : x;
}

// `y <= 0 ? 0 : g` as torch's threshold_backward: the gradient passes where y is NaN.
template <typename T>
MINIDL_INLINE C10_HOST_DEVICE T relu_grad(T g, T y) {
  return y <= T(0) ? T(0) : g;
}

// The gradient through tanh from its output y: g * tanh'(x), tanh' = 1 - y^2. Rounded as written:
// the build's -ffp-contract=off keeps the compiler from fusing 1 - y*y into an FMA.
template <typename T>
MINIDL_INLINE T tanh_grad(T g, T y) {
  return g * (T(1) - y * y);
}

}  // namespace cpu
}  // namespace minidl
