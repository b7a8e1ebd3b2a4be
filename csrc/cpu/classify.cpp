// Cross-entropy, softmax and the pairwise outer product on the CPU: one pass over each row, rows
// split among threads; sums within a row run in index order and the loss adds fixed chunks of rows
// in a fixed order, so the results are the same for any number of threads.
#include "classify.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "runtime/grain.h"

namespace minidl {
namespace cpu {
namespace {

// exp(x - max) into e, returning (max, sum); a row of n contiguous values.
template <typename T>
inline T exp_shifted(const T* x, T* e, int64_t n, T& max) {
  T m = x[0];
  for (int64_t c = 1; c < n; ++c) m = x[c] > m || std::isnan(x[c]) ? x[c] : m;  // NaN wins, as in torch
  T sum = 0;
  for (int64_t c = 0; c < n; ++c) {
    e[c] = std::exp(x[c] - m);
    sum += e[c];
  }
  max = m;
  return sum;
}

}  // namespace

void cross_entropy_out(const at::Tensor& logits, const at::Tensor& target, at::Tensor& loss, at::Tensor& grad) {
  const int64_t n = logits.size(0), classes = logits.size(1);
  const int64_t* tp = target.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "minidl_cross_entropy", [&] {
    const scalar_t* xp = logits.const_data_ptr<scalar_t>();
    scalar_t* gp = grad.mutable_data_ptr<scalar_t>();
    const scalar_t inv_n = static_cast<scalar_t>(1.0 / static_cast<double>(std::max<int64_t>(n, 1)));
    // One partial sum per chunk of rows (in double), added in order: not cpu::kGrain, which sets the threading.
    constexpr int64_t kChunk = 4096;
    std::vector<double> partial((n + kChunk - 1) / kChunk, 0.0);
    at::parallel_for(0, static_cast<int64_t>(partial.size()), 1, [&](int64_t c0, int64_t c1) {
      for (int64_t chunk = c0; chunk < c1; ++chunk) {
        double sum = 0.0;
        for (int64_t i = chunk * kChunk, end = std::min(n, (chunk + 1) * kChunk); i < end; ++i) {
          const scalar_t* x = xp + i * classes;
          scalar_t* g = gp + i * classes;
          const int64_t t = tp[i];
          scalar_t m;
          const scalar_t s = exp_shifted(x, g, classes, m);
          const scalar_t e_t = g[t];
          for (int64_t c = 0; c < classes; ++c) g[c] = g[c] / s * inv_n;
          g[t] = (e_t / s - scalar_t(1)) * inv_n;
          // -log softmax(x)[t] = -((x_t - max) - log(sum)), rounded as torch's log_softmax and nll_loss
          const scalar_t nll = -((x[t] - m) - std::log(s));
          sum += static_cast<double>(nll);
        }
        partial[chunk] = sum;
      }
    });
    double total = 0.0;
    for (double p : partial) total += p;
    *loss.mutable_data_ptr<scalar_t>() = static_cast<scalar_t>(
        n > 0 ? total / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN());
  });
}

void softmax_out(const at::Tensor& x, at::Tensor& y, int64_t outer, int64_t size, int64_t inner) {
  if (size == 0) return;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_softmax", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    if (inner == 1) {
      at::parallel_for(0, outer, grain_for(size), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          scalar_t m;
          const scalar_t s = exp_shifted(xp + r * size, yp + r * size, size, m);
          scalar_t* row = yp + r * size;
          for (int64_t c = 0; c < size; ++c) row[c] = row[c] / s;
        }
      });
      return;
    }
    // A lane (o, i) is strided by inner: the same arithmetic as a row, in the same order.
    at::parallel_for(0, outer * inner, grain_for(size), [&](int64_t l0, int64_t l1) {
      for (int64_t l = l0; l < l1; ++l) {
        const int64_t base = (l / inner) * size * inner + l % inner;
        const scalar_t* xl = xp + base;
        scalar_t* yl = yp + base;
        scalar_t m = xl[0];
        for (int64_t c = 1; c < size; ++c) m = xl[c * inner] > m || std::isnan(xl[c * inner]) ? xl[c * inner] : m;
        scalar_t s = 0;
        for (int64_t c = 0; c < size; ++c) {
          yl[c * inner] = std::exp(xl[c * inner] - m);
          s += yl[c * inner];
        }
        for (int64_t c = 0; c < size; ++c) yl[c * inner] = yl[c * inner] / s;
      }
    });
  });
}

void softmax_backward_out(const at::Tensor& g, const at::Tensor& y, at::Tensor& out, int64_t outer, int64_t size,
                          int64_t inner) {
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "minidl_softmax_backward", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, outer * inner, grain_for(size), [&](int64_t l0, int64_t l1) {
      for (int64_t l = l0; l < l1; ++l) {
        const int64_t base = (l / inner) * size * inner + l % inner;
        const scalar_t* gl = gp + base;
        const scalar_t* yl = yp + base;
        scalar_t* ol = op + base;
        scalar_t dot = 0;
        for (int64_t c = 0; c < size; ++c) dot += gl[c * inner] * yl[c * inner];
        for (int64_t c = 0; c < size; ++c) ol[c * inner] = yl[c * inner] * (gl[c * inner] - dot);
      }
    });
  });
}

void pair_outer_out(const at::Tensor& x, at::Tensor& out) {
  const int64_t n = x.size(0), k = x.size(2);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_pair_outer", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, grain_for(k * k), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* a = xp + r * 2 * k;
        const scalar_t* b = a + k;
        scalar_t* o = op + r * k * k;
        for (int64_t i = 0; i < k; ++i)
          for (int64_t j = 0; j < k; ++j) o[i * k + j] = a[i] * b[j];
      }
    });
  });
}

void pair_outer_backward_out(const at::Tensor& g, const at::Tensor& x, at::Tensor& out) {
  const int64_t n = x.size(0), k = x.size(2);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_pair_outer_backward", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, grain_for(k * k), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* a = xp + r * 2 * k;
        const scalar_t* b = a + k;
        const scalar_t* gr = gp + r * k * k;
        scalar_t* ga = op + r * 2 * k;
        scalar_t* gb = ga + k;
        for (int64_t j = 0; j < k; ++j) gb[j] = 0;
        for (int64_t i = 0; i < k; ++i) {  // both sums in index order: over j for ga[i], over i for gb[j]
          scalar_t dot = 0;
          for (int64_t j = 0; j < k; ++j) {
            dot += gr[i * k + j] * b[j];
            gb[j] += gr[i * k + j] * a[i];
          }
          ga[i] = dot;
        }
      }
    });
  });
}

}  // namespace cpu
}  // namespace minidl
