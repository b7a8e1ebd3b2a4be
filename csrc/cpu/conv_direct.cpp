// Direct convolution loops for layers with few taps (a first layer: 3x3 on 1 or 2 channels), where
// im2col's matrix is large and its product with K = taps runs BLAS far below peak. The output
// channels are the vector dimension: each output pixel keeps a block of them in registers while
// the taps are summed (forward), and each tap keeps one while the positions are summed (weight
// gradient). Every multiply-add is one std::fma in a fixed order, so the vector width, the clone
// picked at load time and the thread count do not change a result.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../conv.h"
#include "runtime/clones.h"
#include "runtime/grain.h"

namespace minidl {
namespace cpu {
namespace {

// Values of one AVX2 register; blocks of output channels are 1 to 4 of them wide.
template <typename T>
constexpr int64_t kLanes = 32 / sizeof(T);

// Output pixels per step of the forward, sharing each weight row's loads.
constexpr int64_t kPixels = 3;
// Taps per pass of the weight gradient: its accumulators and the grad_output row fill the registers.
constexpr int64_t kTapBlock = 3;
// Positions per chunk of the weight gradient, a fixed split (not the thread count's) whose partial
// sums are added in chunk order; a chunk's grad_output rows stay in L2 across the tap passes.
constexpr int64_t kChunkPositions = 512;

// The layout of the padded channels-last input, and each tap's offset in a window.
struct Geometry {
  ConvShape s;
  int64_t hp, wp;            // padded input height and width
  std::vector<int64_t> off;  // off[(kh * KW + kw) * C + c]: the tap's offset from the window's corner
  int64_t image() const { return hp * wp * s.c; }
  // The window of output (n, oh, ow = 0).
  int64_t row_start(int64_t n, int64_t oh) const { return n * image() + oh * s.sh * wp * s.c; }
};

Geometry geometry(const ConvShape& s) {
  Geometry g{s, s.h + 2 * s.ph, s.w + 2 * s.pw, {}};
  for (int64_t kh = 0; kh < s.kh; ++kh)
    for (int64_t kw = 0; kw < s.kw; ++kw)
      for (int64_t c = 0; c < s.c; ++c) g.off.push_back((kh * g.wp + kw) * s.c + c);
  return g;
}

// y[p * ys + :ob] = bias[:ob] + the sum over taps t of x[p * step + off[t]] * w[t * ws + :ob], for PX
// pixels; B >= ob channels in registers (w and bias readable to B).
template <typename T, int64_t B, int64_t PX>
MINIDL_INLINE void pixels(const T* x, int64_t step, const int64_t* off, int64_t taps, const T* w, int64_t ws,
                          const T* bias, int64_t ob, T* y, int64_t ys) {
  T acc[PX][B];
  for (int64_t p = 0; p < PX; ++p)
    for (int64_t j = 0; j < B; ++j) acc[p][j] = T(0);
  for (int64_t t = 0; t < taps; ++t) {
    const T* wt = w + t * ws;
    for (int64_t p = 0; p < PX; ++p) {
      const T xv = x[p * step + off[t]];
      for (int64_t j = 0; j < B; ++j) acc[p][j] = std::fma(xv, wt[j], acc[p][j]);
    }
  }
  if (ob == B) {  // a whole block by loops of a fixed trip count
    for (int64_t p = 0; p < PX; ++p)
      for (int64_t j = 0; j < B; ++j) y[p * ys + j] = acc[p][j] + bias[j];
    return;
  }
  for (int64_t p = 0; p < PX; ++p) {
    T last[B];  // a copy, so that acc is never indexed at run time and stays in registers
    for (int64_t j = 0; j < B; ++j) last[j] = acc[p][j] + bias[j];
    for (int64_t j = 0; j < ob; ++j) y[p * ys + j] = last[j];
  }
}

// Output channels [o0, o0 + ob) (ob <= B) of the output rows [r0, r1) (a row: one (n, oh)).
// w: the weight as [taps, ws] (channel o at column o, zero past O); bias: ws values.
template <typename T, int64_t B>
MINIDL_CLONES void forward_rows(const Geometry& g, const T* x, const T* w, int64_t ws, const T* bias, T* y,
                                int64_t r0, int64_t r1, int64_t o0, int64_t ob) {
  const ConvShape& s = g.s;
  const int64_t step = s.sw * s.c, taps = s.taps();
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + g.row_start(r / s.oh, r % s.oh);
    T* yr = y + r * s.ow * s.o + o0;
    int64_t ow = 0;
    for (; ow + kPixels <= s.ow; ow += kPixels)
      pixels<T, B, kPixels>(xr + ow * step, step, g.off.data(), taps, w + o0, ws, bias + o0, ob, yr + ow * s.o, s.o);
    for (; ow < s.ow; ++ow)
      pixels<T, B, 1>(xr + ow * step, step, g.off.data(), taps, w + o0, ws, bias + o0, ob, yr + ow * s.o, s.o);
  }
}

// part[t][:] (t < TB) = sum over the positions of rows [r0, r1) of x_window[t0 + t] * grad_output[o0 : o0 + B];
// gy: grad_output as [positions, gs], readable to column o0 + B.
template <typename T, int64_t B, int64_t TB>
MINIDL_CLONES void weight_grad_rows(const Geometry& g, const T* x, const T* gy, int64_t gs, int64_t r0, int64_t r1,
                                    int64_t o0, int64_t t0, T* part, int64_t ps) {
  const ConvShape& s = g.s;
  const int64_t step = s.sw * s.c;
  int64_t off[TB];
  for (int64_t t = 0; t < TB; ++t) off[t] = g.off[t0 + t];
  T acc[TB][B];
  for (int64_t t = 0; t < TB; ++t)
    for (int64_t j = 0; j < B; ++j) acc[t][j] = T(0);
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + g.row_start(r / s.oh, r % s.oh);
    const T* gr = gy + r * s.ow * gs + o0;
    for (int64_t ow = 0; ow < s.ow; ++ow) {
      const T* gv = gr + ow * gs;  // read per tap, from L1: a register copy would spill the accumulators
      for (int64_t t = 0; t < TB; ++t) {
        const T xv = xr[ow * step + off[t]];
        for (int64_t j = 0; j < B; ++j) acc[t][j] = std::fma(xv, gv[j], acc[t][j]);
      }
    }
  }
  for (int64_t t = 0; t < TB; ++t)
    for (int64_t j = 0; j < B; ++j) part[(t0 + t) * ps + o0 + j] = acc[t][j];
}

// sum[o0 : o0 + B] = the column sums of grad_output over the positions of rows [r0, r1), in registers.
template <typename T, int64_t B>
MINIDL_CLONES void bias_grad_rows(const ConvShape& s, const T* gy, int64_t gs, int64_t r0, int64_t r1, int64_t o0,
                                  T* sum) {
  T acc[B];
  for (int64_t j = 0; j < B; ++j) acc[j] = T(0);
  for (int64_t p = r0 * s.ow; p < r1 * s.ow; ++p)
    for (int64_t j = 0; j < B; ++j) acc[j] += gy[p * gs + o0 + j];
  for (int64_t j = 0; j < B; ++j) sum[o0 + j] = acc[j];
}

// Calls f with the block width (a compile-time number of values) for the block of channels from o0.
template <typename T, typename F>
void with_block(int64_t padded_o, int64_t o0, const F& f) {
  switch (std::min<int64_t>(4, (padded_o - o0) / kLanes<T>)) {
    case 1: return f(std::integral_constant<int64_t, kLanes<T>>{});
    case 2: return f(std::integral_constant<int64_t, 2 * kLanes<T>>{});
    case 3: return f(std::integral_constant<int64_t, 3 * kLanes<T>>{});
    default: return f(std::integral_constant<int64_t, 4 * kLanes<T>>{});
  }
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The input as a dense channels-last [N, H + 2 PH, W + 2 PW, C], its border zero.
at::Tensor padded_input(const at::Tensor& input, const ConvShape& s) {
  if (s.ph == 0 && s.pw == 0) {
    // Strides of [N, H, W, C] except for dimensions of size 1, which are never stepped over.
    return input.contiguous(at::MemoryFormat::ChannelsLast);
  }
  at::Tensor x = at::zeros({s.n, s.h + 2 * s.ph, s.w + 2 * s.pw, s.c}, input.options());
  x.narrow(1, s.ph, s.h).narrow(2, s.pw, s.w).copy_(input.permute({0, 2, 3, 1}));
  return x;
}

}  // namespace

void conv_direct_forward(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                         const ConvShape& s, at::Tensor& rows) {
  TORCH_INTERNAL_ASSERT(rows.is_contiguous() && rows.size(0) == s.positions() && rows.size(1) == s.o);
  const Geometry g = geometry(s);
  const at::Tensor x = padded_input(input, s);
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "minidl_conv_direct_forward", [&] {
    using T = scalar_t;
    // The weight as [taps, ws], tap-major, with zero columns up to a whole number of vectors.
    const int64_t ws = round_up(s.o, kLanes<T>);
    std::vector<T> w(s.taps() * ws, T(0)), b(ws, T(0));
    const at::Tensor wm = weight.permute({2, 3, 1, 0}).contiguous();  // [kh, kw, c, o]
    const T* wp = wm.const_data_ptr<T>();
    for (int64_t t = 0; t < s.taps(); ++t) std::copy(wp + t * s.o, wp + (t + 1) * s.o, w.begin() + t * ws);
    if (bias.has_value()) {
      const at::Tensor bc = bias->contiguous();
      std::copy(bc.const_data_ptr<T>(), bc.const_data_ptr<T>() + s.o, b.begin());
    }
    const T* xp = x.const_data_ptr<T>();
    T* yp = rows.mutable_data_ptr<T>();
    // Each output row is written by one thread, once: any split gives the same result.
    at::parallel_for(0, s.n * s.oh, grain_for(s.ow * s.o * s.taps()), [&](int64_t r0, int64_t r1) {
      for (int64_t o0 = 0; o0 < s.o; o0 += 4 * kLanes<T>) {
        with_block<T>(ws, o0, [&](auto block) {
          constexpr int64_t B = decltype(block)::value;
          forward_rows<T, B>(g, xp, w.data(), ws, b.data(), yp, r0, r1, o0, std::min(B, s.o - o0));
        });
      }
    });
  });
}

void conv_direct_weight_grad(const at::Tensor& rows, const at::Tensor& input, const ConvShape& s,
                             at::Tensor& grad_weight, const c10::optional<at::Tensor>& grad_bias) {
  TORCH_INTERNAL_ASSERT(rows.dim() == 2 && rows.size(0) == s.positions() && rows.size(1) == s.o);
  const Geometry g = geometry(s);
  const at::Tensor x = padded_input(input, s);
  const int64_t taps = s.taps(), out_rows = s.n * s.oh;
  const int64_t chunk_rows = std::max<int64_t>(1, kChunkPositions / s.ow);
  const int64_t chunks = (out_rows + chunk_rows - 1) / chunk_rows;
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "minidl_conv_direct_weight_grad", [&] {
    using T = scalar_t;
    const int64_t ws = round_up(s.o, kLanes<T>);
    // grad_output with rows of whole vectors: a zero-padded copy when O is not a multiple of them.
    at::Tensor gy = rows.contiguous();
    if (ws != s.o) {
      gy = at::zeros({s.positions(), ws}, rows.options());
      gy.narrow(1, 0, s.o).copy_(rows);
    }
    const int64_t gs = ws;
    const T* gp = gy.const_data_ptr<T>();
    const T* xp = x.const_data_ptr<T>();
    // part[chunk]: [taps + 1, ws], the chunk's sums per tap and (last row) for the bias.
    const int64_t part_size = (taps + 1) * ws;
    std::vector<T> parts(chunks * part_size);
    at::parallel_for(0, chunks, grain_for(kChunkPositions * taps * s.o), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t r0 = c * chunk_rows, r1 = std::min(out_rows, r0 + chunk_rows);
        T* part = parts.data() + c * part_size;
        for (int64_t o0 = 0; o0 < s.o; o0 += 4 * kLanes<T>) {
          with_block<T>(ws, o0, [&](auto block) {
            constexpr int64_t B = decltype(block)::value;
            int64_t t0 = 0;
            for (; t0 + kTapBlock <= taps; t0 += kTapBlock)
              weight_grad_rows<T, B, kTapBlock>(g, xp, gp, gs, r0, r1, o0, t0, part, ws);
            for (; t0 < taps; ++t0) weight_grad_rows<T, B, 1>(g, xp, gp, gs, r0, r1, o0, t0, part, ws);
            if (grad_bias.has_value()) bias_grad_rows<T, B>(s, gp, gs, r0, r1, o0, part + taps * ws);
          });
        }
      }
    });
    // The chunks' partial sums in chunk order, then into the gradients (of any strides).
    for (int64_t c = 1; c < chunks; ++c)
      for (int64_t i = 0; i < part_size; ++i) parts[i] += parts[c * part_size + i];
    const at::Tensor total = at::from_blob(parts.data(), {s.kh, s.kw, s.c, ws}, rows.options());
    grad_weight.add_(total.narrow(3, 0, s.o).permute({3, 2, 0, 1}));
    if (grad_bias.has_value()) {
      at::Tensor gb = *grad_bias;
      gb.add_(at::from_blob(parts.data() + taps * ws, {s.o}, rows.options()));
    }
  });
}

}  // namespace cpu
}  // namespace minidl
