// Batch-norm loops: two passes for the statistics (the mean, then squared deviations: as accurate
// as torch's), one for the output; one pass for the backward sums, one for the input's gradient.
// Planes (NCHW) parallelise over channels, rows (channels-last) over channel blocks for the sums
// and over rows for the elementwise passes.
#include "norm.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "runtime/clones.h"
#include "runtime/grain.h"

namespace minidl {
namespace cpu {
namespace {

constexpr int kLanes = 8;

// sum(f(i)) for i < n over kLanes partial sums, combined in a fixed order: vectorises without
// reassociation, so every instruction-set clone rounds alike.
template <typename F>
MINIDL_INLINE double lane_sum(int64_t n, F f) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += f(i + k);
  double tail = 0;
  for (; i < n; ++i) tail += f(i);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

template <typename T>
MINIDL_CLONES double block_sum(const T* x, int64_t n) {
  return lane_sum(n, [=](int64_t i) { return static_cast<double>(x[i]); });
}

template <typename T>
MINIDL_CLONES double block_var_sum(const T* x, int64_t n, double mean) {
  return lane_sum(n, [=](int64_t i) {
    const double d = static_cast<double>(x[i]) - mean;
    return d * d;
  });
}

template <typename T>
MINIDL_CLONES void block_grad_sums(const T* g, const T* x, int64_t n, double mean, double& gsum, double& dot) {
  gsum += lane_sum(n, [=](int64_t i) { return static_cast<double>(g[i]); });
  dot += lane_sum(n, [=](int64_t i) { return static_cast<double>(g[i]) * (static_cast<double>(x[i]) - mean); });
}

// Rows: acc[c] += f(row r, channel c) for channels [c0, c1), rows in order.
template <typename T>
MINIDL_CLONES void rows_sum(const T* x, int64_t rows, int64_t C, int64_t c0, int64_t c1, double* acc) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = c0; c < c1; ++c) acc[c] += static_cast<double>(x[r * C + c]);
}

template <typename T>
MINIDL_CLONES void rows_var_sum(const T* x, int64_t rows, int64_t C, int64_t c0, int64_t c1, const double* mean,
                                double* acc) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = c0; c < c1; ++c) {
      const double d = static_cast<double>(x[r * C + c]) - mean[c];
      acc[c] += d * d;
    }
  }
}

template <typename T>
MINIDL_CLONES void rows_grad_sums(const T* g, const T* x, int64_t rows, int64_t C, int64_t c0, int64_t c1,
                                  const double* mean, double* gsum, double* dot) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = c0; c < c1; ++c) {
      const double gv = static_cast<double>(g[r * C + c]);
      gsum[c] += gv;
      dot[c] += gv * (static_cast<double>(x[r * C + c]) - mean[c]);
    }
  }
}

// The elementwise passes over one row of C channels (Row: the channel is i) or one plane (the channel fixed).
template <bool Row>
MINIDL_INLINE int64_t channel(int64_t i) {
  return Row ? i : 0;
}

template <bool Row, typename T>
MINIDL_CLONES void affine(const T* x, T* y, int64_t n, const T* a, const T* b) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a[channel<Row>(i)] + b[channel<Row>(i)];
}

template <bool Row, typename T>
MINIDL_CLONES void grad_train(const T* g, const T* x, T* gi, int64_t n, const T* mean, const T* gm, const T* k,
                              const T* scale) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = channel<Row>(i);
    gi[i] = (g[i] - gm[c] - (x[i] - mean[c]) * k[c]) * scale[c];
  }
}

template <bool Row, typename T>
MINIDL_CLONES void grad_eval(const T* g, T* gi, int64_t n, const T* scale) {
  for (int64_t i = 0; i < n; ++i) gi[i] = g[i] * scale[channel<Row>(i)];
}

// Channel-wise reductions: fn(c0, c1) for blocks of channels (the layouts' sums are per channel).
template <typename F>
void over_channels(Layout l, F fn) {
  at::parallel_for(0, l.c, grain_for(l.count()), fn);
}

// Elementwise passes: rows(first element, rows) over blocks of whole rows, or plane(first element, length,
// channel) per plane.
template <typename Rows, typename Plane>
void over_elements(Layout l, Rows rows, Plane plane) {
  if (l.rows) {
    at::parallel_for(0, l.count(), grain_for(l.c), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) rows(r * l.c);
    });
  } else {
    at::parallel_for(0, l.n * l.c, grain_for(l.s), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) plane(p * l.s, p % l.c);
    });
  }
}

}  // namespace

void batch_norm_stats(const at::Tensor& x, Layout l, std::vector<double>& mean, std::vector<double>& var_sum) {
  mean.assign(l.c, 0.0);
  var_sum.assign(l.c, 0.0);
  const double count = static_cast<double>(l.count());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_batch_norm_stats", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    over_channels(l, [&](int64_t c0, int64_t c1) {
      if (l.rows) {
        rows_sum(xp, l.count(), l.c, c0, c1, mean.data());
        for (int64_t c = c0; c < c1; ++c) mean[c] /= count;
        rows_var_sum(xp, l.count(), l.c, c0, c1, mean.data(), var_sum.data());
        return;
      }
      for (int64_t c = c0; c < c1; ++c) {
        double sum = 0;
        for (int64_t n = 0; n < l.n; ++n) sum += block_sum(xp + (n * l.c + c) * l.s, l.s);
        mean[c] = sum / count;
        double vs = 0;
        for (int64_t n = 0; n < l.n; ++n) vs += block_var_sum(xp + (n * l.c + c) * l.s, l.s, mean[c]);
        var_sum[c] = vs;
      }
    });
  });
}

void batch_norm_apply(const at::Tensor& x, at::Tensor& y, Layout l, const at::Tensor& alpha, const at::Tensor& beta) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_batch_norm_apply", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const scalar_t* a = alpha.const_data_ptr<scalar_t>();
    const scalar_t* b = beta.const_data_ptr<scalar_t>();
    over_elements(
        l, [&](int64_t base) { affine<true>(xp + base, yp + base, l.c, a, b); },
        [&](int64_t base, int64_t c) { affine<false>(xp + base, yp + base, l.s, a + c, b + c); });
  });
}

void batch_norm_grad_sums(const at::Tensor& g, const at::Tensor& x, Layout l, const std::vector<double>& mean,
                          std::vector<double>& gsum, std::vector<double>& dot) {
  gsum.assign(l.c, 0.0);
  dot.assign(l.c, 0.0);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_batch_norm_grad_sums", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    over_channels(l, [&](int64_t c0, int64_t c1) {
      if (l.rows) {
        rows_grad_sums(gp, xp, l.count(), l.c, c0, c1, mean.data(), gsum.data(), dot.data());
        return;
      }
      for (int64_t c = c0; c < c1; ++c) {
        for (int64_t n = 0; n < l.n; ++n) {
          const int64_t base = (n * l.c + c) * l.s;
          block_grad_sums(gp + base, xp + base, l.s, mean[c], gsum[c], dot[c]);
        }
      }
    });
  });
}

void batch_norm_grad_input(const at::Tensor& g, const at::Tensor& x, at::Tensor& gi, Layout l, const at::Tensor& mean,
                           const at::Tensor& grad_mean, const at::Tensor& k, const at::Tensor& scale) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_batch_norm_grad_input", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = gi.mutable_data_ptr<scalar_t>();
    const scalar_t* sc = scale.const_data_ptr<scalar_t>();
    if (!k.defined()) {
      over_elements(
          l, [&](int64_t base) { grad_eval<true>(gp + base, op + base, l.c, sc); },
          [&](int64_t base, int64_t c) { grad_eval<false>(gp + base, op + base, l.s, sc + c); });
      return;
    }
    const scalar_t* mp = mean.const_data_ptr<scalar_t>();
    const scalar_t* gm = grad_mean.const_data_ptr<scalar_t>();
    const scalar_t* kp = k.const_data_ptr<scalar_t>();
    over_elements(
        l, [&](int64_t base) { grad_train<true>(gp + base, xp + base, op + base, l.c, mp, gm, kp, sc); },
        [&](int64_t base, int64_t c) {
          grad_train<false>(gp + base, xp + base, op + base, l.s, mp + c, gm + c, kp + c, sc + c);
        });
  });
}

}  // namespace cpu
}  // namespace minidl
