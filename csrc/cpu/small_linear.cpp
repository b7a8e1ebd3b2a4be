// Direct loops for small Linear layers; every inner loop runs along contiguous memory so that the
// compiler vectorizes it (the forward's dot product with an explicit SIMD reduction).
#include "small_linear.h"

#include <ATen/Dispatch.h>

#include <cmath>

#include "runtime/clones.h"
#include "activation_loops.h"

namespace minidl {
namespace cpu {
namespace {

// Up to about 8K multiply-adds (25x25 layers to batch 13) the loops beat BLAS's per-call cost
// (`python -m minidl.bench --sections ops` compares them; README).
constexpr int64_t kMaxMultiplyAdds = int64_t(1) << 13;

// Narrow outputs (the disk network's last layer): a dot product per output.
template <typename T>
MINIDL_CLONES void forward_dot_loop(const T* x, const T* W, const T* b, T* y, int64_t N, int64_t in, int64_t out) {
  for (int64_t n = 0; n < N; ++n) {
    const T* xn = x + n * in;
    for (int64_t o = 0; o < out; ++o) {
      const T* wo = W + o * in;
      T acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = 0; i < in; ++i) acc += xn[i] * wo[i];
      y[n * out + o] = acc + b[o];
    }
  }
}

// Wider outputs: y[n, :] = b + sum_i x[n, i] * Wt[i, :], each term a vectorized pass along the
// output row (Wt is W transposed, [in, out]).
template <typename T>
MINIDL_CLONES void forward_axpy_loop(const T* x, const T* Wt, const T* b, T* y, int64_t N, int64_t in, int64_t out) {
  for (int64_t n = 0; n < N; ++n) {
    const T* xn = x + n * in;
    T* yn = y + n * out;
    for (int64_t o = 0; o < out; ++o) yn[o] = b[o];
    for (int64_t i = 0; i < in; ++i) {
      const T xi = xn[i];
      const T* wi = Wt + i * out;
      for (int64_t o = 0; o < out; ++o) yn[o] += xi * wi[o];
    }
  }
}

template <typename T>
MINIDL_CLONES void backward_loop(const T* g, const T* x, const T* W, T* gW, T* gb, T* gx, int64_t N, int64_t in,
                                 int64_t out) {
  for (int64_t n = 0; n < N; ++n) {
    const T* gn = g + n * out;
    const T* xn = x + n * in;
    for (int64_t o = 0; o < out; ++o) gb[o] += gn[o];
    for (int64_t o = 0; o < out; ++o) {
      const T go = gn[o];
      T* gwo = gW + o * in;
      for (int64_t i = 0; i < in; ++i) gwo[i] += go * xn[i];
    }
    if (gx != nullptr) {
      T* gxn = gx + n * in;
      for (int64_t i = 0; i < in; ++i) gxn[i] = 0;
      for (int64_t o = 0; o < out; ++o) {
        const T go = gn[o];
        const T* wo = W + o * in;
        for (int64_t i = 0; i < in; ++i) gxn[i] += go * wo[i];
      }
    }
  }
}

}  // namespace

bool small_linear_pays(int64_t batch, int64_t in_features, int64_t out_features) {
  return batch * in_features * out_features <= kMaxMultiplyAdds;
}

void small_linear_forward(const at::Tensor& x, const at::Tensor& W, const at::Tensor& b, at::Tensor& y,
                          Activation act) {
  const int64_t N = x.size(0), in = W.size(1), out = W.size(0);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_small_linear_forward", [&] {
    const scalar_t* w = W.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    if (out < 8 || N <= 1) {
      forward_dot_loop(xp, w, b.const_data_ptr<scalar_t>(), yp, N, in, out);
      return;
    }
    // W transposed, reused for every row: at most kMaxMultiplyAdds / 2 values here, as N >= 2.
    scalar_t wt[kMaxMultiplyAdds / 2];
    TORCH_INTERNAL_ASSERT(in * out <= kMaxMultiplyAdds / 2, "small_linear_forward: a layer too large for it");
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) wt[i * out + o] = w[o * in + i];
    forward_axpy_loop(xp, wt, b.const_data_ptr<scalar_t>(), yp, N, in, out);
  });
  activation_out(y, y, act);
}

void small_linear_backward(at::Tensor& g, const at::Tensor& y, const at::Tensor& x, const at::Tensor& W,
                           at::Tensor& gW, at::Tensor& gb, at::Tensor& gx, Activation act) {
  activation_backward_out(g, y, g, act);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_small_linear_backward", [&] {
    backward_loop(g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), W.const_data_ptr<scalar_t>(),
                  gW.mutable_data_ptr<scalar_t>(), gb.mutable_data_ptr<scalar_t>(),
                  gx.defined() ? gx.mutable_data_ptr<scalar_t>() : nullptr, x.size(0), x.size(1), W.size(0));
  });
}

}  // namespace cpu
}  // namespace minidl
