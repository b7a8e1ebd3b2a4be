// The block's forward loops: one pass over the input (pooling), then one over the small pooled tensor (affine
// transform and ReLU). Channels-last: vectorised over channels; NCHW: one plane per task.
#include "block.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <type_traits>

#include "elementwise.h"
#include "runtime/clones.h"
#include "runtime/grain.h"

namespace minidl {
namespace cpu {
namespace {

// An integer as wide as T, so that the channel loops vectorise without mixing widths.
template <typename T>
using Lane = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

// One output pixel of every channel, 2x2 window: x0 and x1 the window's two rows (channels-last).
template <typename T>
MINIDL_CLONES void pixel_argmax_2x2(const T* x0, const T* x1, T* y, uint8_t* a, int64_t C) {
  const T* rows[4] = {x0, x0 + C, x1, x1 + C};
  for (int64_t c = 0; c < C; ++c) {
    T m = rows[0][c];
    Lane<T> p = 0;
    for (int k = 1; k < 4; ++k) {
      const T v = rows[k][c];
      const bool t = takes(v, m);
      m = t ? v : m;
      p = t ? k : p;
    }
    y[c] = m;
    a[c] = static_cast<uint8_t>(p);
  }
}

// Any window: x the window's first element of a channels-last image of width W.
template <typename T>
MINIDL_CLONES void pixel_argmax(const T* x, T* y, uint8_t* a, int64_t C, int64_t W, Window w) {
  for (int64_t c = 0; c < C; ++c) {
    y[c] = x[c];
    a[c] = 0;
  }
  for (int64_t i = 0; i < w.kh; ++i) {
    for (int64_t j = 0; j < w.kw; ++j) {
      const T* row = x + (i * W + j) * C;
      const uint8_t pos = static_cast<uint8_t>(i * w.kw + j);
      for (int64_t c = 0; c < C; ++c) {
        const bool t = takes(row[c], y[c]);
        y[c] = t ? row[c] : y[c];
        a[c] = t ? pos : a[c];
      }
    }
  }
}

// One NCHW plane.
template <typename T>
MINIDL_CLONES void plane_argmax(const T* x, T* y, uint8_t* a, int64_t W, int64_t OH, int64_t OW, Window w) {
  for (int64_t oh = 0; oh < OH; ++oh) {
    for (int64_t ow = 0; ow < OW; ++ow) {
      const T* xs = x + oh * w.sh * W + ow * w.sw;
      T m = xs[0];
      int64_t p = 0;
      for (int64_t i = 0; i < w.kh; ++i) {
        for (int64_t j = 0; j < w.kw; ++j) {
          const T v = xs[i * W + j];
          const bool t = takes(v, m);
          m = t ? v : m;
          p = t ? i * w.kw + j : p;
        }
      }
      y[oh * OW + ow] = m;
      a[oh * OW + ow] = static_cast<uint8_t>(p);
    }
  }
}

template <bool Row, typename T>
MINIDL_CLONES void affine_relu_loop(const T* x, T* y, int64_t n, const T* a, const T* b) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = Row ? i : 0;
    y[i] = relu_value(x[i] * a[c] + b[c]);
  }
}

}  // namespace

void pool_argmax(const at::Tensor& x, at::Tensor& pooled, at::Tensor& argmax, Window w, bool channels_last) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = pooled.size(2), OW = pooled.size(3);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_pool_argmax", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = pooled.mutable_data_ptr<scalar_t>();
    uint8_t* ap = argmax.mutable_data_ptr<uint8_t>();
    if (!channels_last) {
      at::parallel_for(0, N * C, grain_for(H * W), [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) plane_argmax(xp + p * H * W, yp + p * OH * OW, ap + p * OH * OW, W, OH, OW, w);
      });
      return;
    }
    const bool two = w.kh == 2 && w.kw == 2;
    at::parallel_for(0, N * OH * OW, grain_for(C * w.kh * w.kw), [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t n = q / (OH * OW), oh = q / OW % OH, ow = q % OW;
        const scalar_t* first = xp + ((n * H + oh * w.sh) * W + ow * w.sw) * C;
        if (two) {
          pixel_argmax_2x2(first, first + W * C, yp + q * C, ap + q * C, C);
        } else {
          pixel_argmax(first, yp + q * C, ap + q * C, C, W, w);
        }
      }
    });
  });
}

void affine_relu(const at::Tensor& pooled, at::Tensor& y, Layout l, const at::Tensor& alpha, const at::Tensor& beta) {
  AT_DISPATCH_FLOATING_TYPES(pooled.scalar_type(), "minidl_affine_relu", [&] {
    const scalar_t* xp = pooled.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const scalar_t* a = alpha.const_data_ptr<scalar_t>();
    const scalar_t* b = beta.const_data_ptr<scalar_t>();
    if (l.rows) {
      at::parallel_for(0, l.count(), grain_for(l.c), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) affine_relu_loop<true>(xp + r * l.c, yp + r * l.c, l.c, a, b);
      });
      return;
    }
    at::parallel_for(0, l.n * l.c, grain_for(l.s), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) affine_relu_loop<false>(xp + p * l.s, yp + p * l.s, l.s, a + p % l.c, b + p % l.c);
    });
  });
}

}  // namespace cpu
}  // namespace minidl
