// The block's backward loops: per-channel sums over the small pooled tensor, then one pass writing grad_input
// whole (each window's gradient at its argmax, zero elsewhere; overlapping windows add in output order).
#include "block.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "elementwise.h"
#include "runtime/clones.h"
#include "runtime/grain.h"

namespace minidl {
namespace cpu {
namespace {

// Rows (channels-last): gsum[c] and dot[c] for channels [c0, c1), rows in order.
template <typename T>
MINIDL_CLONES void rows_relu_grad_sums(const T* g, const T* y, const T* x, int64_t rows, int64_t C, int64_t c0,
                                       int64_t c1, const double* mean, double* gsum, double* dot) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = c0; c < c1; ++c) {
      const double gz = static_cast<double>(relu_grad(g[r * C + c], y[r * C + c]));
      gsum[c] += gz;
      dot[c] += gz * (static_cast<double>(x[r * C + c]) - mean[c]);
    }
  }
}

template <typename T>
MINIDL_CLONES void plane_relu_grad_sums(const T* g, const T* y, const T* x, int64_t n, double mean, double& gsum,
                                        double& dot) {
  double s = 0, d = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double gz = static_cast<double>(relu_grad(g[i], y[i]));
    s += gz;
    d += gz * (static_cast<double>(x[i]) - mean);
  }
  gsum += s;
  dot += d;
}

// gp[c] of one pooled pixel (Row: channels c < n) or of n pooled elements of one channel (coefficients fixed).
template <bool Row, typename T>
MINIDL_CLONES void pooled_grad(const T* g, const T* y, const T* p, T* gp, int64_t n, const T* mean, const T* gm,
                               const T* k, const T* scale) {
  if (k == nullptr) {
    for (int64_t i = 0; i < n; ++i) gp[i] = relu_grad(g[i], y[i]) * scale[Row ? i : 0];
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = Row ? i : 0;
    gp[i] = (relu_grad(g[i], y[i]) - gm[c] - (p[i] - mean[c]) * k[c]) * scale[c];
  }
}

// A window's kh x kw positions of a channels-last image written whole: gp at the argmax, else 0.
template <typename T>
MINIDL_CLONES void write_window_rows(T* out, const T* gp, const uint8_t* a, int64_t C, int64_t W, Window w) {
  for (int64_t i = 0; i < w.kh; ++i) {
    for (int64_t j = 0; j < w.kw; ++j) {
      T* row = out + (i * W + j) * C;
      const uint8_t pos = static_cast<uint8_t>(i * w.kw + j);
      for (int64_t c = 0; c < C; ++c) row[c] = a[c] == pos ? gp[c] : T(0);
    }
  }
}

// Zero the parts of an image (H x W pixels of `per` elements) that no window covers when windows tile it.
template <typename T>
void zero_uncovered(T* image, int64_t H, int64_t W, int64_t per, int64_t covered_h, int64_t covered_w) {
  if (covered_w < W) {
    for (int64_t h = 0; h < covered_h; ++h)
      std::memset(image + (h * W + covered_w) * per, 0, sizeof(T) * (W - covered_w) * per);
  }
  if (covered_h < H) std::memset(image + covered_h * W * per, 0, sizeof(T) * (H - covered_h) * W * per);
}

template <typename T>
struct GradArgs {
  const T *g, *y, *p, *mean, *gm, *k, *scale;
  const uint8_t* a;
  T* gi;
};

template <typename T>
void grad_channels_last(const GradArgs<T>& r, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW,
                        Window w) {
  const bool tiled = w.sh == w.kh && w.sw == w.kw;
  at::parallel_for(0, N, grain_for(H * W * C), [&](int64_t n0, int64_t n1) {
    std::vector<T> gp(C);
    for (int64_t n = n0; n < n1; ++n) {
      T* image = r.gi + n * H * W * C;
      if (!tiled) std::memset(image, 0, sizeof(T) * H * W * C);
      for (int64_t q = n * OH * OW; q < (n + 1) * OH * OW; ++q) {
        const int64_t oh = q / OW % OH, ow = q % OW;
        pooled_grad<true>(r.g + q * C, r.y + q * C, r.p + q * C, gp.data(), C, r.mean, r.gm, r.k, r.scale);
        T* first = image + (oh * w.sh * W + ow * w.sw) * C;
        const uint8_t* a = r.a + q * C;
        if (tiled) {
          write_window_rows(first, gp.data(), a, C, W, w);
          continue;
        }
        for (int64_t c = 0; c < C; ++c) first[(a[c] / w.kw * W + a[c] % w.kw) * C + c] += gp[c];
      }
      if (tiled) zero_uncovered(image, H, W, C, OH * w.kh, OW * w.kw);
    }
  });
}

template <typename T>
void grad_planes(const GradArgs<T>& r, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW,
                 Window w) {
  const bool tiled = w.sh == w.kh && w.sw == w.kw;
  const int64_t OHW = OH * OW;
  at::parallel_for(0, N * C, grain_for(H * W), [&](int64_t p0, int64_t p1) {
    std::vector<T> gp(OHW);
    for (int64_t pl = p0; pl < p1; ++pl) {
      const int64_t c = pl % C, o = pl * OHW;
      T* plane = r.gi + pl * H * W;
      pooled_grad<false>(r.g + o, r.y + o, r.p + o, gp.data(), OHW, r.mean + c, r.gm ? r.gm + c : nullptr,
                         r.k ? r.k + c : nullptr, r.scale + c);
      if (!tiled) std::memset(plane, 0, sizeof(T) * H * W);
      for (int64_t j = 0; j < OHW; ++j) {
        T* first = plane + j / OW * w.sh * W + j % OW * w.sw;
        const int64_t at = r.a[o + j] / w.kw * W + r.a[o + j] % w.kw;
        if (!tiled) {
          first[at] += gp[j];
          continue;
        }
        for (int64_t i = 0; i < w.kh; ++i)
          for (int64_t jj = 0; jj < w.kw; ++jj) first[i * W + jj] = i * W + jj == at ? gp[j] : T(0);
      }
      if (tiled) zero_uncovered(plane, H, W, int64_t{1}, OH * w.kh, OW * w.kw);
    }
  });
}

}  // namespace

void relu_grad_sums(const at::Tensor& g, const at::Tensor& y, const at::Tensor& pooled, Layout l,
                    const std::vector<double>& mean, std::vector<double>& gsum, std::vector<double>& dot) {
  gsum.assign(l.c, 0.0);
  dot.assign(l.c, 0.0);
  AT_DISPATCH_FLOATING_TYPES(pooled.scalar_type(), "minidl_relu_grad_sums", [&] {
    const scalar_t *gp = g.const_data_ptr<scalar_t>(), *yp = y.const_data_ptr<scalar_t>();
    const scalar_t* xp = pooled.const_data_ptr<scalar_t>();
    at::parallel_for(0, l.c, grain_for(l.count()), [&](int64_t c0, int64_t c1) {
      if (l.rows) {
        rows_relu_grad_sums(gp, yp, xp, l.count(), l.c, c0, c1, mean.data(), gsum.data(), dot.data());
        return;
      }
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t n = 0; n < l.n; ++n) {
          const int64_t base = (n * l.c + c) * l.s;
          plane_relu_grad_sums(gp + base, yp + base, xp + base, l.s, mean[c], gsum[c], dot[c]);
        }
    });
  });
}

void block_grad_input(const at::Tensor& g, const at::Tensor& y, const at::Tensor& pooled, const at::Tensor& argmax,
                      at::Tensor& grad_input, Window w, bool channels_last, const at::Tensor& mean,
                      const at::Tensor& grad_mean, const at::Tensor& k, const at::Tensor& scale) {
  const int64_t N = grad_input.size(0), C = grad_input.size(1), H = grad_input.size(2), W = grad_input.size(3);
  const int64_t OH = g.size(2), OW = g.size(3);
  AT_DISPATCH_FLOATING_TYPES(grad_input.scalar_type(), "minidl_block_grad_input", [&] {
    const bool train = k.defined();
    const GradArgs<scalar_t> r{g.const_data_ptr<scalar_t>(),
                               y.const_data_ptr<scalar_t>(),
                               pooled.const_data_ptr<scalar_t>(),
                               mean.const_data_ptr<scalar_t>(),
                               train ? grad_mean.const_data_ptr<scalar_t>() : nullptr,
                               train ? k.const_data_ptr<scalar_t>() : nullptr,
                               scale.const_data_ptr<scalar_t>(),
                               argmax.const_data_ptr<uint8_t>(),
                               grad_input.mutable_data_ptr<scalar_t>()};
    if (channels_last) {
      grad_channels_last(r, N, C, H, W, OH, OW, w);
    } else {
      grad_planes(r, N, C, H, W, OH, OW, w);
    }
  });
}

}  // namespace cpu
}  // namespace minidl
