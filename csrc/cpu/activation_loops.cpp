// Tanh and ReLU, forward and backward, as hand-written loops on the CPU, for the activation ops
// (activation.cpp) and the fused ones (ops/mlp.cpp, small_linear.cpp). Each loop body is
// branch-free scalar code over contiguous memory so that the compiler vectorizes it (setup.py's
// -fno-trapping-math lets it turn the selects into blends); the loops are compiled for AVX-512,
// x86-64-v3 and baseline x86-64, and one is picked at load time (runtime/clones.h).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "activation_loops.h"
#include "elementwise.h"
#include "runtime/clones.h"
#include "runtime/grain.h"
#include "runtime/streaming.h"


namespace minidl {
namespace {

using cpu::grain_for;
using cpu::kGrain;

MINIDL_INLINE float bits_to_float(int32_t i) { return __builtin_bit_cast(float, i); }
MINIDL_INLINE int32_t float_to_bits(float f) { return __builtin_bit_cast(int32_t, f); }

// exp(x) for 0 <= x <= 20 (Cephes expf): x = n ln2 + r, exp(r) by a degree-6 polynomial, 2^n by
// building the exponent bits. Rounding via the 1.5*2^23 trick keeps the loop free of calls.
// Horner steps are std::fma: fewer instructions and one rounding each, the same on every CPU.
MINIDL_INLINE float exp_small_f32(float x) {
  const float shifter = 12582912.0f;  // 1.5 * 2^23
  float t = std::fma(x, 1.44269504088896341f, shifter);
  float n = t - shifter;
  int32_t ni = float_to_bits(t) - float_to_bits(shifter);
  float r = std::fma(n, -0.693359375f, x);
  r = std::fma(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  p = std::fma(p, r * r, r) + 1.0f;
  return p * bits_to_float((ni + 127) << 23);
}

// tanh in float32, max error 1 ulp (test_ops.py sweeps it against float64): an odd polynomial
// near 0 (Cephes tanhf), else 1 - 2 / (exp(2|x|) + 1). Above |x| = 10, tanh rounds to +-1 in
// float32, hence the clamp.
MINIDL_INLINE float tanh_f32(float x) {
  float ax = std::fabs(x);
  float s = x * x;
  float q = -5.70498872745e-3f;
  q = std::fma(q, s, 2.06390887954e-2f);
  q = std::fma(q, s, -5.37397155531e-2f);
  q = std::fma(q, s, 1.33314422036e-1f);
  q = std::fma(q, s, -3.33332819422e-1f);
  float small = std::fma(q * s, x, x);
  float a = ax < 10.0f ? ax : 10.0f;
  float large = 1.0f - 2.0f / (exp_small_f32(2.0f * a) + 1.0f);
  float y = std::copysign(ax < 0.625f ? small : large, x);  // tanh is odd: keeps tanh(-0) = -0
  return x != x ? x : y;                                      // NaN in, NaN out
}

MINIDL_INLINE float tanh_any(float x) { return tanh_f32(x); }
MINIDL_INLINE double tanh_any(double x) { return std::tanh(x); }

// The hardware prefetchers fall behind a loop this heavy in arithmetic, and then the core waits for
// memory and computes in turn. Asking for the input a few blocks ahead, by hand, lets the two
// overlap (`python -m minidl.bench --sections ops`: tanh at 2^24 against relu, same bytes moved).
template <typename T>
MINIDL_CLONES void tanh_loop(const T* x, T* y, int64_t n) {
  constexpr int64_t kBlock = 1024 / sizeof(T), kAhead = 2 * kBlock, kLine = 64 / sizeof(T);
  for (int64_t b = 0; b < n; b += kBlock) {
    if (b + kAhead + kBlock <= n)
      for (int64_t k = 0; k < kBlock; k += kLine) __builtin_prefetch(x + b + kAhead + k);
    const int64_t e = std::min(n, b + kBlock);
    for (int64_t i = b; i < e; ++i) y[i] = tanh_any(x[i]);
  }
}

template <typename T>
MINIDL_CLONES void tanh_backward_loop(const T* g, const T* y, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = cpu::tanh_grad(g[i], y[i]);
}

template <typename T>
MINIDL_CLONES void relu_loop(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = cpu::relu_value(x[i]);
}

template <typename T>
MINIDL_CLONES void relu_backward_loop(const T* g, const T* y, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = cpu::relu_grad(g[i], y[i]);
}

// y[r, c] = act(y[r, c] + b[c]) over a contiguous [rows, cols] y: a matrix product's epilogue.
template <typename T, Activation A>
MINIDL_CLONES void bias_activation_loop(T* y, const T* b, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    T* yr = y + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const T v = yr[c] + b[c];
      if constexpr (A == Activation::Relu) {
        yr[c] = cpu::relu_value(v);
      } else if constexpr (A == Activation::Tanh) {
        yr[c] = tanh_any(v);
      } else {
        yr[c] = v;
      }
    }
  }
}

// out[r, c] = grad * act'(y) (as activation_backward_out) and gb[c] += out[r, c] for the columns
// [c0, c1) of contiguous [rows, cols] tensors: rows added in order, as ops/mlp.cpp's column sums.
template <typename T, Activation A>
MINIDL_CLONES void backward_column_sums_loop(const T* g, const T* y, T* out, T* gb, int64_t rows, int64_t cols,
                                             int64_t c0, int64_t c1) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* gr = g + r * cols;
    const T* yr = y + r * cols;
    T* outr = out + r * cols;
#pragma omp simd
    for (int64_t c = c0; c < c1; ++c) {
      const T o = A == Activation::Relu ? cpu::relu_grad(gr[c], yr[c]) : cpu::tanh_grad(gr[c], yr[c]);
      outr[c] = o;
      gb[c] += o;
    }
  }
}

// A float32 output this large is written by the loop with streaming stores (streaming.cpp), unless
// it overwrites an input: then the loop has just read each line, so there is no read to save, and
// streaming would only push out of the cache the data that the next op reads back.
bool use_streaming_stores(const at::Tensor& out, const at::Tensor& in, const at::Tensor& other_in) {
  return out.const_data_ptr() != in.const_data_ptr() && out.const_data_ptr() != other_in.const_data_ptr() &&
         cpu::new_output_streams(out);
}

// y = f(x) elementwise over contiguous CPU tensors of the same dtype; y may be x itself.
// `stream` is f's streaming float32 loop, or nullptr where there is none.
template <typename Loop>
void apply_unary(const at::Tensor& x, at::Tensor& y, Loop loop, void (*stream)(const float*, float*, int64_t)) {
  if (stream != nullptr && use_streaming_stores(y, x, x)) {
    const float* xp = x.const_data_ptr<float>();
    float* yp = y.mutable_data_ptr<float>();
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t b, int64_t e) { stream(xp + b, yp + b, e - b); });
    return;
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_unary", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t b, int64_t e) { loop(xp + b, yp + b, e - b); });
  });
}

// out = f(g, s) elementwise over contiguous CPU tensors; out may be g itself.
template <typename Loop>
void apply_binary(const at::Tensor& g, const at::Tensor& s, at::Tensor& out, Loop loop,
                  void (*stream)(const float*, const float*, float*, int64_t)) {
  if (stream != nullptr && use_streaming_stores(out, g, s)) {
    const float* gp = g.const_data_ptr<float>();
    const float* sp = s.const_data_ptr<float>();
    float* outp = out.mutable_data_ptr<float>();
    at::parallel_for(0, s.numel(), kGrain, [&](int64_t b, int64_t e) { stream(gp + b, sp + b, outp + b, e - b); });
    return;
  }
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "minidl_binary", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    scalar_t* outp = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, s.numel(), kGrain, [&](int64_t b, int64_t e) { loop(gp + b, sp + b, outp + b, e - b); });
  });
}

const auto kTanh = [](auto* x, auto* y, int64_t n) { tanh_loop(x, y, n); };
const auto kRelu = [](auto* x, auto* y, int64_t n) { relu_loop(x, y, n); };
const auto kTanhBackward = [](auto* g, auto* y, auto* o, int64_t n) { tanh_backward_loop(g, y, o, n); };
const auto kReluBackward = [](auto* g, auto* y, auto* o, int64_t n) { relu_backward_loop(g, y, o, n); };

}  // namespace

namespace cpu {

bool new_output_streams(const at::Tensor& like) {
  return like.scalar_type() == at::kFloat && stream_output(like.numel() * int64_t(sizeof(float)));
}

void activation_out(const at::Tensor& x, at::Tensor& y, Activation act) {
  if (act == Activation::Tanh) apply_unary(x, y, kTanh, nullptr);
  if (act == Activation::Relu) apply_unary(x, y, kRelu, relu_stream);
}

void bias_activation_(at::Tensor& y, const at::Tensor& b, Activation act) {
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "minidl_bias_activation", [&] {
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const scalar_t* bp = b.const_data_ptr<scalar_t>();
    const int64_t cols = y.size(1);
    at::parallel_for(0, y.size(0), grain_for(cols), [&](int64_t r0, int64_t r1) {
      if (act == Activation::Relu) bias_activation_loop<scalar_t, Activation::Relu>(yp + r0 * cols, bp, r1 - r0, cols);
      if (act == Activation::Tanh) bias_activation_loop<scalar_t, Activation::Tanh>(yp + r0 * cols, bp, r1 - r0, cols);
      if (act == Activation::None) bias_activation_loop<scalar_t, Activation::None>(yp + r0 * cols, bp, r1 - r0, cols);
    });
  });
}

void activation_backward_out(const at::Tensor& grad, const at::Tensor& y, at::Tensor& out, Activation act) {
  if (act == Activation::Tanh) apply_binary(grad, y, out, kTanhBackward, tanh_backward_stream);
  if (act == Activation::Relu) apply_binary(grad, y, out, kReluBackward, relu_backward_stream);
}

void activation_backward_column_sums_(const at::Tensor& grad, const at::Tensor& y, at::Tensor& out, Activation act,
                                      at::Tensor& grad_bias) {
  TORCH_INTERNAL_ASSERT(act != Activation::None && y.dim() == 2 && grad_bias.numel() == y.size(1),
                        "activation_backward_column_sums_: expects an activation, a matrix and a bias per column");
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "minidl_backward_column_sums", [&] {
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    scalar_t* outp = out.mutable_data_ptr<scalar_t>();
    scalar_t* bp = grad_bias.mutable_data_ptr<scalar_t>();
    const int64_t rows = y.size(0), cols = y.size(1);
    // Columns split across threads, each thread walking every row of its columns.
    at::parallel_for(0, cols, grain_for(rows), [&](int64_t c0, int64_t c1) {
      if (act == Activation::Relu)
        backward_column_sums_loop<scalar_t, Activation::Relu>(gp, yp, outp, bp, rows, cols, c0, c1);
      else
        backward_column_sums_loop<scalar_t, Activation::Tanh>(gp, yp, outp, bp, rows, cols, c0, c1);
    });
  });
}

}  // namespace cpu
}  // namespace minidl
