// Direct convolution on the CPU for layers with few values per kernel row (a network's first layer: 3x3
// on 1 or 2 channels). There im2col's matrix has 9 or 18 columns, a shape BLAS runs far below its peak,
// and writing that matrix costs more than the arithmetic. Here each output pixel keeps a block of output
// channels in vector registers and adds, per tap, one input value times one weight row; the weight
// gradient keeps two taps' blocks in registers over an image's pixels. The input is read zero-padded and
// channels-last, so no tap needs a bounds test. Each output, and each chunk of images' share of the weight
// gradient, is summed in a fixed order: the results do not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "../conv.h"
#include "runtime/clones.h"

namespace minidl {
namespace cpu {
namespace {

constexpr int64_t kBlock = 32;         // output channels kept together: 4 AVX2 or 2 AVX-512 vectors of floats
constexpr int64_t kChunkImages = 8;    // images per share of the weight gradient (fixed: thread-count independent)
std::atomic<int64_t> max_row_values{8};  // the direct kernels run when kw * C <= this (0: never)

int64_t padded_channels(int64_t o) { return (o + kBlock - 1) / kBlock * kBlock; }

// The input as dense, zero-padded [N, H + 2 ph, W + 2 pw, C]: the input's own memory when it already is.
at::Tensor padded_input(const at::Tensor& input, const ConvShape& s) {
  const at::Tensor nhwc = input.permute({0, 2, 3, 1});
  if (s.ph == 0 && s.pw == 0 && nhwc.is_contiguous()) return nhwc;
  at::Tensor x = at::zeros({s.n, s.h + 2 * s.ph, s.w + 2 * s.pw, s.c}, input.options());
  x.narrow(1, s.ph, s.h).narrow(2, s.pw, s.w).copy_(nhwc);
  return x;
}

// Offsets of the taps (kh, kw, c), in that order, from a window's first value in the padded input.
std::vector<int64_t> tap_offsets(const ConvShape& s) {
  std::vector<int64_t> taps;
  const int64_t wp = s.w + 2 * s.pw;
  for (int64_t kh = 0; kh < s.kh; ++kh)
    for (int64_t kw = 0; kw < s.kw; ++kw)
      for (int64_t c = 0; c < s.c; ++c) taps.push_back((kh * wp + kw) * s.c + c);
  return taps;
}

// gcc would otherwise interchange the tap and channel loops and run the channels one at a time.
#if defined(__GNUC__) && !defined(__clang__)
#define MINIDL_CHANNELS_INNER __attribute__((optimize("no-loop-interchange,no-loop-unroll-and-jam")))
#else
#define MINIDL_CHANNELS_INNER
#endif

struct Geometry {
  const int64_t* taps;
  int64_t ntaps, hp, wp, opad;
};

// One output row at a time: its pixels' accumulators are independent, so the tap loop is not one long
// chain of dependent additions through memory. acc: [OW, kBlock] of scratch.
template <typename T>
MINIDL_CLONES MINIDL_CHANNELS_INNER void forward_images(const T* x, const T* wt, const T* bias, const ConvShape& s,
                                                        Geometry g, int64_t n0, int64_t n1, T* acc, T* y) {
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t oh = 0; oh < s.oh; ++oh) {
      const T* line = x + (n * g.hp + oh * s.sh) * g.wp * s.c;
      for (int64_t o0 = 0; o0 < s.o; o0 += kBlock) {
        for (int64_t ow = 0; ow < s.ow; ++ow) {
#pragma omp simd
          for (int64_t o = 0; o < kBlock; ++o) acc[ow * kBlock + o] = bias[o0 + o];
        }
        for (int64_t t = 0; t < g.ntaps; ++t) {
          const T* src = line + g.taps[t];
          const T* w = wt + t * g.opad + o0;
          for (int64_t ow = 0; ow < s.ow; ++ow) {
            const T v = src[ow * s.sw * s.c];
            T* a = acc + ow * kBlock;
#pragma omp simd  // the channel loop is the vector one
            for (int64_t o = 0; o < kBlock; ++o) a[o] = std::fma(v, w[o], a[o]);
          }
        }
        const int64_t ob = std::min(kBlock, s.o - o0);
        for (int64_t ow = 0; ow < s.ow; ++ow) {
          T* out = y + ((n * s.oh + oh) * s.ow + ow) * s.o + o0;
          for (int64_t o = 0; o < ob; ++o) out[o] = acc[ow * kBlock + o];
        }
      }
    }
  }
}

// part[t, o] += sum over the pixels of images [n0, n1) of window value t times grad_output[pixel, o];
// gy: [N*OH*OW, opad], channels fastest.
template <typename T>
MINIDL_CLONES MINIDL_CHANNELS_INNER void weight_grad_images(const T* x, const T* gy, const ConvShape& s, Geometry g, int64_t n0, int64_t n1,
                                      T* part) {
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t t0 = 0; t0 < g.ntaps; t0 += 2) {
      const bool two = t0 + 1 < g.ntaps;
      const int64_t off0 = g.taps[t0], off1 = g.taps[two ? t0 + 1 : t0];
      for (int64_t o0 = 0; o0 < g.opad; o0 += kBlock) {
        T a0[kBlock] = {}, a1[kBlock] = {};
        for (int64_t oh = 0; oh < s.oh; ++oh) {
          for (int64_t ow = 0; ow < s.ow; ++ow) {
            const T* win = x + ((n * g.hp + oh * s.sh) * g.wp + ow * s.sw) * s.c;
            const T v0 = win[off0], v1 = win[off1];
            const T* row = gy + ((n * s.oh + oh) * s.ow + ow) * g.opad + o0;
#pragma omp simd
            for (int64_t o = 0; o < kBlock; ++o) {
              a0[o] = std::fma(v0, row[o], a0[o]);
              a1[o] = std::fma(v1, row[o], a1[o]);
            }
          }
        }
        T* p0 = part + t0 * g.opad + o0;
        for (int64_t o = 0; o < kBlock; ++o) p0[o] += a0[o];
        if (two)
          for (int64_t o = 0; o < kBlock; ++o) p0[g.opad + o] += a1[o];
      }
    }
  }
}

}  // namespace

bool conv_direct_fits(const ConvShape& s) { return s.kw * s.c <= max_row_values.load(); }

int64_t set_conv_direct_limit(int64_t values) { return max_row_values.exchange(values); }

void conv_direct_forward(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                         const ConvShape& s, at::Tensor& rows) {
  const at::Tensor x = padded_input(input, s);
  const int64_t opad = padded_channels(s.o);
  // The weight as [taps, opad] (output channels fastest, zero past O), and the bias as [opad].
  at::Tensor wt = at::zeros({s.kh * s.kw * s.c, opad}, weight.options());
  wt.narrow(1, 0, s.o).copy_(weight.permute({2, 3, 1, 0}).reshape({-1, s.o}));
  at::Tensor b = at::zeros({opad}, weight.options());
  if (bias.has_value()) b.narrow(0, 0, s.o).copy_(*bias);
  const std::vector<int64_t> taps = tap_offsets(s);
  const Geometry g{taps.data(), static_cast<int64_t>(taps.size()), s.h + 2 * s.ph, s.w + 2 * s.pw, opad};
  TORCH_INTERNAL_ASSERT(rows.is_contiguous() && rows.size(0) == s.positions() && rows.size(1) == s.o);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_conv_direct_forward", [&] {
    const scalar_t *xp = x.const_data_ptr<scalar_t>(), *wp = wt.const_data_ptr<scalar_t>();
    const scalar_t* bp = b.const_data_ptr<scalar_t>();
    scalar_t* yp = rows.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, s.n, 1, [&](int64_t n0, int64_t n1) {
      std::vector<scalar_t> acc(s.ow * kBlock);
      forward_images(xp, wp, bp, s, g, n0, n1, acc.data(), yp);
    });
  });
}

void conv_direct_weight_grad(const at::Tensor& grad_rows, const at::Tensor& input, const ConvShape& s,
                             at::Tensor& grad_weight) {
  const at::Tensor x = padded_input(input, s);
  const int64_t opad = padded_channels(s.o);
  at::Tensor gy = grad_rows.contiguous();  // [positions, O]
  if (opad != s.o) {
    at::Tensor wide = at::zeros({s.positions(), opad}, gy.options());
    wide.narrow(1, 0, s.o).copy_(gy);
    gy = wide;
  }
  const std::vector<int64_t> taps = tap_offsets(s);
  const int64_t ntaps = static_cast<int64_t>(taps.size());
  const Geometry g{taps.data(), ntaps, s.h + 2 * s.ph, s.w + 2 * s.pw, opad};
  const int64_t chunks = (s.n + kChunkImages - 1) / kChunkImages;
  at::Tensor parts = at::zeros({chunks, ntaps, opad}, grad_weight.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_conv_direct_weight_grad", [&] {
    const scalar_t *xp = x.const_data_ptr<scalar_t>(), *gp = gy.const_data_ptr<scalar_t>();
    scalar_t* pp = parts.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c)
        weight_grad_images(xp, gp, s, g, c * kChunkImages, std::min(s.n, (c + 1) * kChunkImages),
                           pp + c * ntaps * opad);
    });
    for (int64_t c = 1; c < chunks; ++c) {  // the chunks' shares added in order
      scalar_t* total = pp;
      const scalar_t* share = pp + c * ntaps * opad;
      for (int64_t i = 0; i < ntaps * opad; ++i) total[i] += share[i];
    }
  });
  // parts[0] is [KH, KW, C, opad]; grad_weight is [O, C, KH, KW].
  grad_weight.add_(parts[0].narrow(1, 0, s.o).view({s.kh, s.kw, s.c, s.o}).permute({3, 2, 0, 1}));
}

}  // namespace cpu
}  // namespace minidl
