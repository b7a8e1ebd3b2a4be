// Winograd's F(2x2, 3x3) on the CPU: the weight's transform U = GgG' and the weight gradient's dg = G'dU G (the
// tiles' transforms are in winograd.cpp, which explains the algorithm), each over the C * O filters in blocks of
// kWinogradBlock, which the loops' fixed trip counts turn into vector instructions.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include <algorithm>

#include "../conv.h"
#include "runtime/clones.h"

namespace minidl {
namespace cpu {
namespace {

constexpr int64_t kBlock = kWinogradBlock;

// u[xi * co + k] = (G g G')[i][j] for the filters k < m of a block; g[t * co + k]: tap t of filter k.
template <typename T, bool Full>
MINIDL_INLINE void weight_block(const T* g, int64_t co, int64_t n, T* u) {
  const int64_t m = Full ? kBlock : n;
  T s[4][3][kBlock];  // G g
  for (int64_t j = 0; j < 3; ++j) {
    for (int64_t k = 0; k < m; ++k) {
      const T g0 = g[j * co + k], g1 = g[(3 + j) * co + k], g2 = g[(6 + j) * co + k];
      s[0][j][k] = g0;
      s[1][j][k] = T(0.5) * (g0 + g1 + g2);
      s[2][j][k] = T(0.5) * (g0 - g1 + g2);
      s[3][j][k] = g2;
    }
  }
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t k = 0; k < m; ++k) {
      u[(4 * i + 0) * co + k] = s[i][0][k];
      u[(4 * i + 1) * co + k] = T(0.5) * (s[i][0][k] + s[i][1][k] + s[i][2][k]);
      u[(4 * i + 2) * co + k] = T(0.5) * (s[i][0][k] - s[i][1][k] + s[i][2][k]);
      u[(4 * i + 3) * co + k] = s[i][2][k];
    }
  }
}

template <typename T>
MINIDL_CLONES void weight_filters(const T* g, int64_t co, T* u) {
  int64_t k = 0;
  for (; k + kBlock <= co; k += kBlock) weight_block<T, true>(g + k, co, kBlock, u + k);
  if (k < co) weight_block<T, false>(g + k, co, co - k, u + k);
}

// dg[t][k] (t = 3 i + j) = (G' dU G)[i][j] for the filters k < m of a block; du[xi * co + k].
template <typename T, bool Full>
MINIDL_INLINE void grad_weight_block(const T* du, int64_t co, int64_t n, T (*dg)[kBlock]) {
  const int64_t m = Full ? kBlock : n;
  T h[3][4][kBlock];  // G' dU
  for (int64_t j = 0; j < 4; ++j) {
    for (int64_t k = 0; k < m; ++k) {
      const T u0 = du[j * co + k], u1 = du[(4 + j) * co + k], u2 = du[(8 + j) * co + k], u3 = du[(12 + j) * co + k];
      h[0][j][k] = u0 + T(0.5) * (u1 + u2);
      h[1][j][k] = T(0.5) * (u1 - u2);
      h[2][j][k] = T(0.5) * (u1 + u2) + u3;
    }
  }
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t k = 0; k < m; ++k) {
      dg[3 * i + 0][k] = h[i][0][k] + T(0.5) * (h[i][1][k] + h[i][2][k]);
      dg[3 * i + 1][k] = T(0.5) * (h[i][1][k] - h[i][2][k]);
      dg[3 * i + 2][k] = T(0.5) * (h[i][1][k] + h[i][2][k]) + h[i][3][k];
    }
  }
}

// grad_weight [O, C, 3, 3] (strides st) += the gradient of each filter k = c * O + o.
template <typename T>
MINIDL_CLONES void grad_weight_filters(const T* du, int64_t C, int64_t O, T* gw, at::IntArrayRef st) {
  const int64_t co = C * O;
  for (int64_t k0 = 0; k0 < co; k0 += kBlock) {
    const int64_t m = std::min(kBlock, co - k0);
    T dg[9][kBlock];
    if (m == kBlock) {
      grad_weight_block<T, true>(du + k0, co, m, dg);
    } else {
      grad_weight_block<T, false>(du + k0, co, m, dg);
    }
    for (int64_t k = 0; k < m; ++k) {
      T* w = gw + (k0 + k) % O * st[0] + (k0 + k) / O * st[1];
      for (int64_t t = 0; t < 9; ++t) w[t / 3 * st[2] + t % 3 * st[3]] += dg[t][k];
    }
  }
}

}  // namespace

void winograd_weight(const at::Tensor& weight, at::Tensor& U) {
  const int64_t O = weight.size(0), C = weight.size(1);
  TORCH_INTERNAL_ASSERT(U.is_contiguous() && U.size(0) == 16 && U.size(1) == C && U.size(2) == O);
  const at::Tensor w = weight.permute({2, 3, 1, 0}).contiguous();  // [3, 3, C, O]: tap-major filters
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "minidl_winograd_weight", [&] {
    weight_filters(w.const_data_ptr<scalar_t>(), C * O, U.mutable_data_ptr<scalar_t>());
  });
}

void winograd_grad_weight(const at::Tensor& dU, at::Tensor& grad_weight) {
  const int64_t O = grad_weight.size(0), C = grad_weight.size(1);
  TORCH_INTERNAL_ASSERT(dU.is_contiguous() && dU.size(0) == 16 && dU.size(1) == C && dU.size(2) == O);
  AT_DISPATCH_FLOATING_TYPES(dU.scalar_type(), "minidl_winograd_grad_weight", [&] {
    grad_weight_filters(dU.const_data_ptr<scalar_t>(), C, O, grad_weight.mutable_data_ptr<scalar_t>(),
                        grad_weight.strides());
  });
}

}  // namespace cpu
}  // namespace minidl
