// Max-pool forward and backward loops: one pass over the input (forward) or the output (backward).
// NCHW: one plane per task; channels-last: one output pixel's C channels per step, vectorised over C.
#include "pool.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <limits>

#include "runtime/clones.h"
#include "runtime/grain.h"

namespace minidl {
namespace cpu {
namespace {

// Whether v replaces the running maximum m: larger, or NaN (which then stays, unless another NaN follows).
template <typename T>
MINIDL_INLINE bool takes(T v, T m) {
  return v > m || v != v;
}

// One plane, a row of outputs at a time: the window's positions in torch's order (row-major), each
// compared with the whole row of running maxima (vectorised over ow).
template <typename T>
MINIDL_CLONES void plane_forward(const T* x, T* y, int64_t* idx, int64_t W, int64_t OH, int64_t OW, Window w) {
  for (int64_t oh = 0; oh < OH; ++oh) {
    T* ym = y + oh * OW;
    int64_t* ik = idx + oh * OW;
    const int64_t h0 = oh * w.sh;
    for (int64_t ow = 0; ow < OW; ++ow) {
      ym[ow] = -std::numeric_limits<T>::infinity();
      ik[ow] = h0 * W + ow * w.sw;
    }
    for (int64_t i = 0; i < w.kh; ++i) {
      for (int64_t j = 0; j < w.kw; ++j) {
        const int64_t first = (h0 + i) * W + j;
        const T* xs = x + first;
        for (int64_t ow = 0; ow < OW; ++ow) {
          const T v = xs[ow * w.sw];
          const bool t = takes(v, ym[ow]);
          ym[ow] = t ? v : ym[ow];
          ik[ow] = t ? first + ow * w.sw : ik[ow];
        }
      }
    }
  }
}

// One output pixel of every channel: y[C], idx[C] from the window's rows of C in x (the image).
template <typename T>
MINIDL_CLONES void pixel_forward(const T* x, T* y, int64_t* idx, int64_t C, int64_t W, int64_t h0, int64_t w0,
                                 Window w) {
  for (int64_t c = 0; c < C; ++c) {
    y[c] = -std::numeric_limits<T>::infinity();
    idx[c] = h0 * W + w0;
  }
  for (int64_t h = h0; h < h0 + w.kh; ++h) {
    for (int64_t col = w0; col < w0 + w.kw; ++col) {
      const T* row = x + (h * W + col) * C;
      const int64_t k = h * W + col;
      for (int64_t c = 0; c < C; ++c) {
        const bool t = takes(row[c], y[c]);
        y[c] = t ? row[c] : y[c];
        idx[c] = t ? k : idx[c];
      }
    }
  }
}

template <typename T>
void forward(const at::Tensor& x, at::Tensor& out, at::Tensor& indices, Window w, bool channels_last) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = out.size(2), OW = out.size(3);
  const T* xp = x.const_data_ptr<T>();
  T* yp = out.mutable_data_ptr<T>();
  int64_t* ip = indices.mutable_data_ptr<int64_t>();
  if (!channels_last) {
    at::parallel_for(0, N * C, grain_for(H * W), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) plane_forward(xp + p * H * W, yp + p * OH * OW, ip + p * OH * OW, W, OH, OW, w);
    });
    return;
  }
  at::parallel_for(0, N * OH * OW, grain_for(C * w.kh * w.kw), [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t n = q / (OH * OW), oh = q / OW % OH, ow = q % OW;
      pixel_forward(xp + n * H * W * C, yp + q * C, ip + q * C, C, W, oh * w.sh, ow * w.sw, w);
    }
  });
}

template <typename T>
bool backward(const at::Tensor& g, const at::Tensor& indices, at::Tensor& gi, bool channels_last) {
  const int64_t N = gi.size(0), C = gi.size(1), HW = gi.size(2) * gi.size(3);
  const int64_t OHW = g.size(2) * g.size(3);
  const T* gp = g.const_data_ptr<T>();
  const int64_t* ip = indices.const_data_ptr<int64_t>();
  T* op = gi.mutable_data_ptr<T>();
  std::atomic<bool> bad{false};
  // One task per plane (NCHW) or image (channels-last): the additions into one element keep their order.
  const int64_t tasks = channels_last ? N : N * C, per_task = channels_last ? C : 1;
  at::parallel_for(0, tasks, grain_for(HW * per_task), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      T* out = op + t * HW * per_task;
      const T* grad = gp + t * OHW * per_task;
      const int64_t* index = ip + t * OHW * per_task;
      for (int64_t i = 0; i < HW * per_task; ++i) out[i] = T(0);
      for (int64_t j = 0; j < OHW; ++j) {
        for (int64_t c = 0; c < per_task; ++c) {
          const int64_t k = index[j * per_task + c];
          if (k < 0 || k >= HW) {
            bad = true;
            return;
          }
          out[k * per_task + c] += grad[j * per_task + c];
        }
      }
    }
  });
  return !bad;
}

}  // namespace

void maxpool2d_forward_out(const at::Tensor& x, at::Tensor& out, at::Tensor& indices, Window w, bool channels_last) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_maxpool2d_forward",
                             [&] { forward<scalar_t>(x, out, indices, w, channels_last); });
}

bool maxpool2d_backward_out(const at::Tensor& grad_output, const at::Tensor& indices, at::Tensor& grad_input,
                            bool channels_last) {
  bool ok = true;
  AT_DISPATCH_FLOATING_TYPES(grad_input.scalar_type(), "minidl_maxpool2d_backward",
                             [&] { ok = backward<scalar_t>(grad_output, indices, grad_input, channels_last); });
  return ok;
}

}  // namespace cpu
}  // namespace minidl
