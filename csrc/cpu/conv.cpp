// im2col and col2im on the CPU (see conv.h). Both walk the input channels-last, where a window's
// row of kw pixels is one contiguous run of kw * C values; each output element is computed by one
// thread, in a fixed order, so the results do not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../conv.h"
#include "runtime/clones.h"
#include "runtime/grain.h"

namespace minidl {
namespace cpu {
namespace {

// Runs are short in a first layer (kw * C values: 3 to 6): a short one is copied by an unrolled
// loop of a fixed trip count rather than by a call to memmove/memset, which costs more than the copy.
constexpr int64_t kShortRun = 16;

template <typename T>
inline void copy_run(const T* src, int64_t n, T* dst) {
  if (n > kShortRun) {
    std::memcpy(dst, src, n * sizeof(T));
    return;
  }
  for (int64_t i = 0; i < kShortRun; ++i)
    if (i < n) dst[i] = src[i];
}

template <typename T>
inline void zero_run(int64_t n, T* dst) {
  if (n > kShortRun) {
    std::fill(dst, dst + n, T(0));
    return;
  }
  for (int64_t i = 0; i < kShortRun; ++i)
    if (i < n) dst[i] = T(0);
}

// x: the input as dense [N, H, W, C]; cols: [N*OH*OW, KH*KW*C]. Run > 0: kw * C known at compile
// time (a first layer's 3x3 on 1 or 2 channels), whose copies then compile to a few vector moves.
template <typename T, int64_t Run>
void im2col_loop(const T* x, const ConvShape& s, T* cols) {
  const int64_t taps = s.taps(), run = Run > 0 ? Run : s.kw * s.c;
  at::parallel_for(0, s.n, grain_for(s.oh * s.ow * taps), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* image = x + n * s.h * s.w * s.c;
      T* row = cols + n * s.oh * s.ow * taps;
      for (int64_t oh = 0; oh < s.oh; ++oh) {
        for (int64_t ow = 0; ow < s.ow; ++ow, row += taps) {
          const int64_t iw0 = ow * s.sw - s.pw;
          const bool inside_w = iw0 >= 0 && iw0 + s.kw <= s.w;
          for (int64_t kh = 0; kh < s.kh; ++kh) {
            const int64_t ih = oh * s.sh - s.ph + kh;
            T* dst = row + kh * run;
            if (ih < 0 || ih >= s.h) {
              zero_run(run, dst);
              continue;
            }
            const T* line = image + ih * s.w * s.c;
            if (inside_w && Run > 0) {
              const T* src = line + iw0 * s.c;
              for (int64_t i = 0; i < Run; ++i) dst[i] = src[i];
              continue;
            }
            if (inside_w) {
              copy_run(line + iw0 * s.c, run, dst);
              continue;
            }
            for (int64_t kw = 0; kw < s.kw; ++kw) {
              const int64_t iw = iw0 + kw;
              if (iw < 0 || iw >= s.w) {
                zero_run(s.c, dst + kw * s.c);
              } else {
                copy_run(line + iw * s.c, s.c, dst + kw * s.c);
              }
            }
          }
        }
      }
    }
  });
}

// Each grad_input element gathers its windows' entries in (kh, kw) order: no races, no atomics.
// g: strides of grad_input [N, C, H, W]; ps, ts: strides of cols' positions and taps.
template <typename T>
void col2im_loop(const T* cols, int64_t ps, int64_t ts, const ConvShape& s, T* gx, at::IntArrayRef g) {
  at::parallel_for(0, s.n, grain_for(s.h * s.w * s.c * s.kh * s.kw), [&](int64_t n0, int64_t n1) {
    std::vector<T> sum(s.c);
    for (int64_t n = n0; n < n1; ++n) {
      const T* image = cols + n * s.oh * s.ow * ps;
      for (int64_t ih = 0; ih < s.h; ++ih) {
        for (int64_t iw = 0; iw < s.w; ++iw) {
          std::fill(sum.begin(), sum.end(), T(0));
          for (int64_t kh = 0; kh < s.kh; ++kh) {
            const int64_t th = ih + s.ph - kh;
            if (th < 0 || th % s.sh != 0 || th / s.sh >= s.oh) continue;
            for (int64_t kw = 0; kw < s.kw; ++kw) {
              const int64_t tw = iw + s.pw - kw;
              if (tw < 0 || tw % s.sw != 0 || tw / s.sw >= s.ow) continue;
              const T* src = image + ((th / s.sh) * s.ow + tw / s.sw) * ps + (kh * s.kw + kw) * s.c * ts;
              for (int64_t c = 0; c < s.c; ++c) sum[c] += src[c * ts];
            }
          }
          T* dst = gx + n * g[0] + ih * g[2] + iw * g[3];
          for (int64_t c = 0; c < s.c; ++c) dst[c * g[1]] = sum[c];
        }
      }
    }
  });
}

// Tiles small enough that a tile's rows and columns both stay in L1.
template <typename T>
void transpose_loop(const T* src, int64_t batch, int64_t rows, int64_t cols, T* dst) {
  constexpr int64_t kTile = 16;
  at::parallel_for(0, batch, grain_for(rows * cols), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* s = src + b * rows * cols;
      T* d = dst + b * rows * cols;
      for (int64_t i0 = 0; i0 < rows; i0 += kTile) {
        const int64_t i1 = std::min(rows, i0 + kTile);
        for (int64_t j0 = 0; j0 < cols; j0 += kTile) {
          const int64_t j1 = std::min(cols, j0 + kTile);
          for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = j0; j < j1; ++j) d[j * rows + i] = s[i * cols + j];
        }
      }
    }
  });
}

// Rows per partial sum of the bias gradient: the partials are added in order afterwards, so the sums do not
// depend on how parallel_for splits the chunks between threads (ATen's sum(0) splits a column when O is small).
constexpr int64_t kBiasRows = 64;

// acc[0:o] = the column sums of rows [r0, r1) of rows [*, o]; vector code over the columns.
template <typename T>
MINIDL_CLONES void column_sums(const T* __restrict__ rows, int64_t r0, int64_t r1, int64_t o, T* __restrict__ acc) {
  for (int64_t j = 0; j < o; ++j) acc[j] = T(0);
  for (int64_t i = r0; i < r1; ++i)
    for (int64_t j = 0; j < o; ++j) acc[j] += rows[i * o + j];
}

// partial [chunks + 1, o]: each chunk's column sums, then in the last row their sum, added in chunk order.
template <typename T>
void bias_grad_loop(const T* rows, int64_t p, int64_t o, int64_t chunks, T* partial) {
  at::parallel_for(0, chunks, grain_for(kBiasRows * o), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      column_sums(rows, c * kBiasRows, std::min(p, (c + 1) * kBiasRows), o, partial + c * o);
  });
  column_sums(partial, 0, chunks, o, partial + chunks * o);
}

}  // namespace

void conv_bias_grad(const at::Tensor& rows, at::Tensor& grad_bias) {
  const at::Tensor r = rows.contiguous();
  const int64_t p = r.size(0), o = r.size(1);
  if (p == 0) return;
  const int64_t chunks = (p + kBiasRows - 1) / kBiasRows;
  at::Tensor partial = at::empty({chunks + 1, o}, r.options());
  AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "minidl_conv_bias_grad", [&] {
    bias_grad_loop(r.const_data_ptr<scalar_t>(), p, o, chunks, partial.mutable_data_ptr<scalar_t>());
  });
  grad_bias.add_(partial[chunks]);
}

void transpose_batched(const at::Tensor& src, int64_t batch, int64_t rows, int64_t cols, at::Tensor& dst) {
  TORCH_INTERNAL_ASSERT(src.is_contiguous() && dst.is_contiguous() && src.numel() == batch * rows * cols &&
                        dst.numel() == src.numel() && src.scalar_type() == dst.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "minidl_transpose_batched", [&] {
    transpose_loop(src.const_data_ptr<scalar_t>(), batch, rows, cols, dst.mutable_data_ptr<scalar_t>());
  });
}

void im2col(const at::Tensor& input, const ConvShape& s, at::Tensor& cols) {
  // Dense channels-last (a no-op for such an input): its strides are then those of [N, H, W, C],
  // except for dimensions of size 1, whose strides are never used.
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
  TORCH_INTERNAL_ASSERT(cols.is_contiguous() && cols.size(0) == s.positions() && cols.size(1) == s.taps());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_im2col", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* cp = cols.mutable_data_ptr<scalar_t>();
    switch (s.kw * s.c) {
      case 3: return im2col_loop<scalar_t, 3>(xp, s, cp);
      case 6: return im2col_loop<scalar_t, 6>(xp, s, cp);
      default: return im2col_loop<scalar_t, 0>(xp, s, cp);
    }
  });
}

void col2im(const at::Tensor& cols, const ConvShape& s, at::Tensor& grad_input) {
  TORCH_INTERNAL_ASSERT(cols.dim() == 2 && cols.size(0) == s.positions() && cols.size(1) == s.taps());
  AT_DISPATCH_FLOATING_TYPES(cols.scalar_type(), "minidl_col2im", [&] {
    col2im_loop(cols.const_data_ptr<scalar_t>(), cols.stride(0), cols.stride(1), s,
                grad_input.mutable_data_ptr<scalar_t>(), grad_input.strides());
  });
}

}  // namespace cpu
}  // namespace minidl
