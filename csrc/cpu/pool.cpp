// Max-pool forward and backward loops: one pass over the input (forward) or the output (backward).
// NCHW: one plane per task; channels-last: one output pixel's C channels per step, vectorised over C.
#include "pool.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <cstring>
#include <limits>
#include <type_traits>

#include "runtime/clones.h"
#include "runtime/grain.h"

namespace minidl {
namespace cpu {
namespace {

// b, or a where the mask t is all ones: through the bits, so that the compiler cannot turn the choice into a
// branch (which random data mispredicts half the time).
template <typename T>
MINIDL_INLINE T select_bits(int64_t t, T a, T b) {
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  I ia, ib;
  std::memcpy(&ia, &a, sizeof(T));
  std::memcpy(&ib, &b, sizeof(T));
  const I r = (ia & static_cast<I>(t)) | (ib & ~static_cast<I>(t));
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}

// One plane, output by output; the window's positions in torch's order (row-major). KH and KW fix the
// window at compile time (the common 2x2 then runs without inner loops), 0 takes w's.
template <int KH, int KW, typename T>
MINIDL_CLONES void plane_forward(const T* x, T* y, int64_t* idx, int64_t W, int64_t OH, int64_t OW, Window w) {
  const int64_t kh = KH ? KH : w.kh, kw = KW ? KW : w.kw;
  for (int64_t oh = 0; oh < OH; ++oh) {
    for (int64_t ow = 0; ow < OW; ++ow) {
      const int64_t first = oh * w.sh * W + ow * w.sw;
      const T* xs = x + first;
      T m = -std::numeric_limits<T>::infinity();
      int64_t k = 0;
      for (int64_t i = 0; i < kh; ++i) {
        for (int64_t j = 0; j < kw; ++j) {
          const T v = xs[i * W + j];
          const int64_t t = -static_cast<int64_t>(takes(v, m));
          m = select_bits(t, v, m);
          k = (k & ~t) | ((i * W + j) & t);
        }
      }
      y[oh * OW + ow] = m;
      idx[oh * OW + ow] = first + k;
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
      for (int64_t p = p0; p < p1; ++p) {
        if (w.kh == 2 && w.kw == 2) {
          plane_forward<2, 2>(xp + p * H * W, yp + p * OH * OW, ip + p * OH * OW, W, OH, OW, w);
        } else {
          plane_forward<0, 0>(xp + p * H * W, yp + p * OH * OW, ip + p * OH * OW, W, OH, OW, w);
        }
      }
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
