// Winograd's F(2x2, 3x3) on the CPU: the weight's transform U = GgG' and the weight gradient's dg = G'dU G (the
// tiles' transforms are in winograd.cpp, which explains the algorithm). Small ([16, C, O]): plain loops.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include "../conv.h"

namespace minidl {
namespace cpu {

void winograd_weight(const at::Tensor& weight, at::Tensor& U) {
  const int64_t O = weight.size(0), C = weight.size(1);
  TORCH_INTERNAL_ASSERT(U.is_contiguous() && U.size(0) == 16 && U.size(1) == C && U.size(2) == O);
  const at::Tensor w = weight.permute({2, 3, 1, 0}).contiguous();  // [3, 3, C, O]
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "minidl_winograd_weight", [&] {
    using T = scalar_t;
    const T* g = w.const_data_ptr<T>();
    T* u = U.mutable_data_ptr<T>();
    const int64_t co = C * O;
    for (int64_t k = 0; k < co; ++k) {
      T s[4][3];  // G g
      for (int64_t j = 0; j < 3; ++j) {
        const T g0 = g[j * co + k], g1 = g[(3 + j) * co + k], g2 = g[(6 + j) * co + k];
        s[0][j] = g0;
        s[1][j] = T(0.5) * (g0 + g1 + g2);
        s[2][j] = T(0.5) * (g0 - g1 + g2);
        s[3][j] = g2;
      }
      for (int64_t i = 0; i < 4; ++i) {  // (G g) G'
        u[(4 * i + 0) * co + k] = s[i][0];
        u[(4 * i + 1) * co + k] = T(0.5) * (s[i][0] + s[i][1] + s[i][2]);
        u[(4 * i + 2) * co + k] = T(0.5) * (s[i][0] - s[i][1] + s[i][2]);
        u[(4 * i + 3) * co + k] = s[i][2];
      }
    }
  });
}

void winograd_grad_weight(const at::Tensor& dU, at::Tensor& grad_weight) {
  const int64_t O = grad_weight.size(0), C = grad_weight.size(1), co = C * O;
  TORCH_INTERNAL_ASSERT(dU.is_contiguous() && dU.size(0) == 16 && dU.size(1) == C && dU.size(2) == O);
  AT_DISPATCH_FLOATING_TYPES(dU.scalar_type(), "minidl_winograd_grad_weight", [&] {
    using T = scalar_t;
    const T* up = dU.const_data_ptr<T>();
    T* gw = grad_weight.mutable_data_ptr<T>();
    const at::IntArrayRef st = grad_weight.strides();
    for (int64_t c = 0; c < C; ++c)
      for (int64_t o = 0; o < O; ++o) {
        const int64_t k = c * O + o;
        T h[3][4];  // G' dU
        for (int64_t j = 0; j < 4; ++j) {
          const T u0 = up[j * co + k], u1 = up[(4 + j) * co + k], u2 = up[(8 + j) * co + k], u3 = up[(12 + j) * co + k];
          h[0][j] = u0 + T(0.5) * (u1 + u2);
          h[1][j] = T(0.5) * (u1 - u2);
          h[2][j] = T(0.5) * (u1 + u2) + u3;
        }
        T* w = gw + o * st[0] + c * st[1];
        for (int64_t i = 0; i < 3; ++i) {  // (G' dU) G
          w[i * st[2]] += h[i][0] + T(0.5) * (h[i][1] + h[i][2]);
          w[i * st[2] + st[3]] += T(0.5) * (h[i][1] - h[i][2]);
          w[i * st[2] + 2 * st[3]] += T(0.5) * (h[i][1] + h[i][2]) + h[i][3];
        }
      }
  });
}

}  // namespace cpu
}  // namespace minidl
