// Winograd's F(2x2, 3x3) for 3x3 stride-1 convolutions on the CPU (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016). Each 2x2 block of outputs comes from a 4x4 tile of the input: in the
// transformed domain, tile V = B'dB and filter U = GgG' meet in 16 elementwise products, each summed over the
// input channels, which for all tiles at once is 16 matrix products [tiles, C] x [C, O] (ops/conv_winograd.cpp
// runs them through ATen); Y = A'MA takes the 16 sums back to the 2x2 outputs. That is 16 multiplications per tile
// and channel pair where direct convolution takes 36: the products shrink 2.25x. The transforms are additions
// and halvings only. The backward is the same algorithm's adjoint: dM = A dY A', dV = dM U', dx = B dV B'
// (tiles overlap by 2 and add up), dU = V'dM, dg = G'dU G.
//
//   B' = [1  0 -1  0]    G = [1    0    0 ]    A' = [1 1  1  0]
//        [0  1  1  0]        [1/2  1/2  1/2]         [0 1 -1 -1]
//        [0 -1  1  0]        [1/2 -1/2  1/2]
//        [0  1  0 -1]        [0    0    1 ]
//
// Every transform loop runs over channels innermost (channels-last rows), and each of its output elements is
// written by one thread in a fixed order, so the transforms' results do not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <vector>

#include "../conv.h"
#include "runtime/clones.h"
#include "runtime/grain.h"

namespace minidl {
namespace cpu {
namespace {

// Channels per step of the tile loops: each step's loops have a fixed trip count over contiguous channels and
// keep their intermediate values in local arrays, so that they compile to vector instructions.
constexpr int64_t kBlock = kWinogradBlock;

// V[xi][p][c0 + k] (xi = 4 i + j, planes vs apart) = (B' d B)[i][j] for the channels k < m of a block; x: the
// tile's first element at channel c0.
template <typename T, bool Full>
MINIDL_INLINE void input_block(const T* x, int64_t row, int64_t C, int64_t n, T* v, int64_t vs) {
  const int64_t m = Full ? kBlock : n;
  T t[4][4][kBlock];  // B' d
  for (int64_t j = 0; j < 4; ++j) {
    for (int64_t k = 0; k < m; ++k) {
      const T d0 = x[j * C + k], d1 = x[row + j * C + k], d2 = x[2 * row + j * C + k], d3 = x[3 * row + j * C + k];
      t[0][j][k] = d0 - d2;
      t[1][j][k] = d1 + d2;
      t[2][j][k] = d2 - d1;
      t[3][j][k] = d1 - d3;
    }
  }
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t k = 0; k < m; ++k) {
      v[(4 * i + 0) * vs + k] = t[i][0][k] - t[i][2][k];
      v[(4 * i + 1) * vs + k] = t[i][1][k] + t[i][2][k];
      v[(4 * i + 2) * vs + k] = t[i][2][k] - t[i][1][k];
      v[(4 * i + 3) * vs + k] = t[i][1][k] - t[i][3][k];
    }
  }
}

template <typename T>
MINIDL_CLONES void input_tile(const T* x, int64_t row, int64_t C, T* v, int64_t vs) {
  int64_t c = 0;
  for (; c + kBlock <= C; c += kBlock) input_block<T, true>(x + c, row, C, kBlock, v + c, vs);
  if (c < C) input_block<T, false>(x + c, row, C, C - c, v + c, vs);
}

// The 2x2 outputs (A' M A)[i][j] + bias of one tile for the channels k < m of a block, from M[xi][p][o0 + k]
// (planes ms apart), to y (rows yrow apart, at channel o0).
template <typename T, bool Full>
MINIDL_INLINE void output_block(const T* mm, int64_t ms, const T* bias, int64_t O, int64_t n, T* y, int64_t yrow) {
  const int64_t m = Full ? kBlock : n;
  T a[2][4][kBlock];  // A' M
  for (int64_t j = 0; j < 4; ++j) {
    for (int64_t k = 0; k < m; ++k) {
      const T m0 = mm[j * ms + k], m1 = mm[(4 + j) * ms + k], m2 = mm[(8 + j) * ms + k], m3 = mm[(12 + j) * ms + k];
      a[0][j][k] = m0 + m1 + m2;
      a[1][j][k] = m1 - m2 - m3;
    }
  }
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t k = 0; k < m; ++k) {
      y[i * yrow + k] = a[i][0][k] + a[i][1][k] + a[i][2][k] + bias[k];
      y[i * yrow + O + k] = a[i][1][k] - a[i][2][k] - a[i][3][k] + bias[k];
    }
  }
}

template <typename T>
MINIDL_CLONES void output_tile(const T* m, int64_t ms, const T* bias, int64_t O, T* y, int64_t yrow) {
  int64_t o = 0;
  for (; o + kBlock <= O; o += kBlock) output_block<T, true>(m + o, ms, bias + o, O, kBlock, y + o, yrow);
  if (o < O) output_block<T, false>(m + o, ms, bias + o, O, O - o, y + o, yrow);
}

// dM[xi][p][o0 + k] (planes ds apart) = (A dY A')[i][j] for the channels k < m of a block, from one tile's 2x2
// output gradients e (rows erow apart, at channel o0).
template <typename T, bool Full>
MINIDL_INLINE void grad_output_block(const T* e, int64_t erow, int64_t O, int64_t n, T* dm, int64_t ds) {
  const int64_t m = Full ? kBlock : n;
  T q[4][2][kBlock];  // A dY
  for (int64_t k = 0; k < m; ++k) {
    const T e00 = e[k], e01 = e[O + k], e10 = e[erow + k], e11 = e[erow + O + k];
    q[0][0][k] = e00;
    q[0][1][k] = e01;
    q[1][0][k] = e00 + e10;
    q[1][1][k] = e01 + e11;
    q[2][0][k] = e00 - e10;
    q[2][1][k] = e01 - e11;
    q[3][0][k] = -e10;
    q[3][1][k] = -e11;
  }
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t k = 0; k < m; ++k) {
      dm[(4 * i + 0) * ds + k] = q[i][0][k];
      dm[(4 * i + 1) * ds + k] = q[i][0][k] + q[i][1][k];
      dm[(4 * i + 2) * ds + k] = q[i][0][k] - q[i][1][k];
      dm[(4 * i + 3) * ds + k] = -q[i][1][k];
    }
  }
}

template <typename T>
MINIDL_CLONES void grad_output_tile(const T* e, int64_t erow, int64_t O, T* dm, int64_t ds) {
  int64_t o = 0;
  for (; o + kBlock <= O; o += kBlock) grad_output_block<T, true>(e + o, erow, O, kBlock, dm + o, ds);
  if (o < O) grad_output_block<T, false>(e + o, erow, O, O - o, dm + o, ds);
}

// Adds (B dV B')[i][j] for the channels k < m of a block, from dV[xi][p][c0 + k] (planes vs apart), into g (an
// image's [H, W, C] sums at the tile's first element and channel c0, rows row apart).
template <typename T, bool Full>
MINIDL_INLINE void grad_input_block(const T* dv, int64_t vs, int64_t C, int64_t n, T* g, int64_t row) {
  const int64_t m = Full ? kBlock : n;
  T r[4][4][kBlock];  // B dV
  for (int64_t j = 0; j < 4; ++j) {
    for (int64_t k = 0; k < m; ++k) {
      const T v0 = dv[j * vs + k], v1 = dv[(4 + j) * vs + k], v2 = dv[(8 + j) * vs + k], v3 = dv[(12 + j) * vs + k];
      r[0][j][k] = v0;
      r[1][j][k] = v1 - v2 + v3;
      r[2][j][k] = v1 + v2 - v0;
      r[3][j][k] = -v3;
    }
  }
  for (int64_t i = 0; i < 4; ++i) {
    T* gi = g + i * row;
    for (int64_t k = 0; k < m; ++k) {
      gi[k] += r[i][0][k];
      gi[C + k] += r[i][1][k] - r[i][2][k] + r[i][3][k];
      gi[2 * C + k] += r[i][1][k] + r[i][2][k] - r[i][0][k];
      gi[3 * C + k] -= r[i][3][k];
    }
  }
}

template <typename T>
MINIDL_CLONES void grad_input_tile(const T* dv, int64_t vs, int64_t C, T* g, int64_t row) {
  int64_t c = 0;
  for (; c + kBlock <= C; c += kBlock) grad_input_block<T, true>(dv + c, vs, C, kBlock, g + c, row);
  if (c < C) grad_input_block<T, false>(dv + c, vs, C, C - c, g + c, row);
}

int64_t tiles_per_image(const ConvShape& s) { return (s.oh / 2) * (s.ow / 2); }

}  // namespace

bool winograd_fits(const ConvShape& s) {
  return s.kh == 3 && s.kw == 3 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0 && s.oh % 2 == 0 &&
         s.ow % 2 == 0;
}

void winograd_input(const at::Tensor& input, const ConvShape& s, at::Tensor& V) {
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t tiles = tiles_per_image(s), P = s.n * tiles;
  TORCH_INTERNAL_ASSERT(V.is_contiguous() && V.size(0) == 16 && V.size(1) == P && V.size(2) == s.c);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_winograd_input", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* vp = V.mutable_data_ptr<scalar_t>();
    const int64_t row = s.w * s.c, tw = s.ow / 2;
    at::parallel_for(0, P, grain_for(16 * s.c), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t n = p / tiles, th = p % tiles / tw, tc = p % tw;
        input_tile(xp + n * s.h * row + 2 * th * row + 2 * tc * s.c, row, s.c, vp + p * s.c, P * s.c);
      }
    });
  });
}

void winograd_output(const at::Tensor& M, const ConvShape& s, const c10::optional<at::Tensor>& bias,
                     at::Tensor& rows) {
  const int64_t tiles = tiles_per_image(s), P = s.n * tiles;
  TORCH_INTERNAL_ASSERT(M.is_contiguous() && M.size(1) == P && rows.is_contiguous() &&
                        rows.size(0) == s.positions() && rows.size(1) == s.o);
  AT_DISPATCH_FLOATING_TYPES(M.scalar_type(), "minidl_winograd_output", [&] {
    using T = scalar_t;
    std::vector<T> b(s.o, T(0));
    if (bias.has_value()) {
      const at::Tensor bc = bias->contiguous();
      std::copy(bc.const_data_ptr<T>(), bc.const_data_ptr<T>() + s.o, b.begin());
    }
    const T* mp = M.const_data_ptr<T>();
    T* yp = rows.mutable_data_ptr<T>();
    const int64_t yrow = s.ow * s.o, tw = s.ow / 2;
    at::parallel_for(0, P, grain_for(16 * s.o), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t n = p / tiles, th = p % tiles / tw, tc = p % tw;
        output_tile(mp + p * s.o, P * s.o, b.data(), s.o, yp + (n * s.oh + 2 * th) * yrow + 2 * tc * s.o, yrow);
      }
    });
  });
}

void winograd_grad_output(const at::Tensor& rows, const ConvShape& s, at::Tensor& dM) {
  const int64_t tiles = tiles_per_image(s), P = s.n * tiles;
  TORCH_INTERNAL_ASSERT(rows.is_contiguous() && rows.size(0) == s.positions() && dM.is_contiguous() &&
                        dM.size(1) == P && dM.size(2) == s.o);
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "minidl_winograd_grad_output", [&] {
    const scalar_t* ep = rows.const_data_ptr<scalar_t>();
    scalar_t* dp = dM.mutable_data_ptr<scalar_t>();
    const int64_t erow = s.ow * s.o, tw = s.ow / 2;
    at::parallel_for(0, P, grain_for(16 * s.o), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t n = p / tiles, th = p % tiles / tw, tc = p % tw;
        grad_output_tile(ep + (n * s.oh + 2 * th) * erow + 2 * tc * s.o, erow, s.o, dp + p * s.o, P * s.o);
      }
    });
  });
}

void winograd_grad_input(const at::Tensor& dV, const ConvShape& s, at::Tensor& grad_input) {
  const int64_t tiles = tiles_per_image(s), P = s.n * tiles;
  TORCH_INTERNAL_ASSERT(dV.is_contiguous() && dV.size(1) == P && dV.size(2) == s.c);
  const at::IntArrayRef g = grad_input.strides();
  AT_DISPATCH_FLOATING_TYPES(dV.scalar_type(), "minidl_winograd_grad_input", [&] {
    using T = scalar_t;
    const T* vp = dV.const_data_ptr<T>();
    T* gp = grad_input.mutable_data_ptr<T>();
    const int64_t row = s.w * s.c, image = s.h * row, tw = s.ow / 2;
    at::parallel_for(0, s.n, grain_for(tiles * 16 * s.c), [&](int64_t n0, int64_t n1) {
      std::vector<T> buffer(image);  // one image's [H, W, C] sums, tiles added in order
      for (int64_t n = n0; n < n1; ++n) {
        std::fill(buffer.begin(), buffer.end(), T(0));
        for (int64_t t = 0; t < tiles; ++t) {
          const int64_t p = n * tiles + t, th = t / tw, tc = t % tw;
          grad_input_tile(vp + p * s.c, P * s.c, s.c, buffer.data() + 2 * th * row + 2 * tc * s.c, row);
        }
        T* dst = gp + n * g[0];
        for (int64_t h = 0; h < s.h; ++h)
          for (int64_t w = 0; w < s.w; ++w) {
            const T* src = buffer.data() + h * row + w * s.c;
            T* d = dst + h * g[2] + w * g[3];
            if (g[1] == 1) {
              std::copy(src, src + s.c, d);  // channels-last: one run per pixel
            } else {
              for (int64_t c = 0; c < s.c; ++c) d[c * g[1]] = src[c];
            }
          }
      }
    });
  });
}

}  // namespace cpu
}  // namespace minidl
