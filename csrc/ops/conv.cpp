// Conv2d forward and backward, CPU and CUDA: the device's im2col/col2im (conv.h) around matrix
// products through ATen, a chunk of images at a time on the CPU (see chunk_bytes): cols [n*OH*OW,
// KH*KW*C] times the weight as [O, KH*KW*C] (channel fastest) gives those images' output rows
// channels-last; a contiguous output is one transposing copy of them. On the CPU two shapes take
// other algorithms: kernels of few taps direct loops (cpu/conv_direct.cpp), 3x3 stride-1 kernels
// Winograd's F(2x2, 3x3) (cpu/winograd.cpp, ops/conv_winograd.cpp); choose() decides.
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>

#include "../checks.h"
#include "../conv.h"
#include "../cpu/runtime/block_cache.h"

namespace minidl {
namespace {

constexpr int64_t kMaxPadding = (int64_t(1) << 31) - 1;  // more is no image's: keeps h + 2 * padding in int64

template <typename Op>
ConvShape check_conv(const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                     at::IntArrayRef padding, const Op& op) {
  check_float(weight, op, "weight");
  check_like(input, weight, op, "input", "weight");
  check_dim(input, 4, op, "input");
  check_dim(weight, 4, op, "weight");
  TORCH_CHECK_VALUE(weight.size(0) > 0 && weight.size(1) > 0 && weight.size(2) > 0 && weight.size(3) > 0, op,
                    ": expected weight of shape [out_channels, in_channels, kh, kw] with no zero size, got ",
                    weight.sizes());
  TORCH_CHECK_VALUE(input.size(1) == weight.size(1), op, ": expected input of shape [N, ", weight.size(1),
                    ", H, W] for weight of shape ", weight.sizes(), ", got ", input.sizes());
  TORCH_CHECK_VALUE(stride.size() == 2 && stride[0] >= 1 && stride[1] >= 1, op,
                    ": expected stride of two positive ints, got ", stride);
  TORCH_CHECK_VALUE(padding.size() == 2 && padding[0] >= 0 && padding[1] >= 0, op,
                    ": expected padding of two non-negative ints, got ", padding);
  ConvShape s{input.size(0), input.size(1), input.size(2), input.size(3), weight.size(0), weight.size(2),
              weight.size(3), stride[0], stride[1], padding[0], padding[1], 0, 0};
  TORCH_CHECK_VALUE(s.ph <= kMaxPadding && s.pw <= kMaxPadding, op, ": expected padding of at most ", kMaxPadding,
                    ", got ", padding);
  TORCH_CHECK_VALUE(s.h + 2 * s.ph >= s.kh && s.w + 2 * s.pw >= s.kw, op, ": expected input of shape ",
                    input.sizes(), " with padding ", padding, " to be at least the kernel's ", s.kh, "x", s.kw,
                    " (weight of shape ", weight.sizes(), ")");
  s.oh = (s.h + 2 * s.ph - s.kh) / s.sh + 1;
  s.ow = (s.w + 2 * s.pw - s.kw) / s.sw + 1;
  return s;
}

// torch's CPU convolution's choice: channels-last if the input or the weight suggests it.
at::MemoryFormat output_format(const at::Tensor& input, const at::Tensor& weight) {
  const bool cl = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
                  weight.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  return cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

void im2col(const at::Tensor& input, const ConvShape& s, at::Tensor& cols) {
#ifdef MINIDL_WITH_CUDA
  if (input.is_cuda()) return cuda::im2col(input, s, cols);
#endif
  TORCH_CHECK(input.is_cpu(), "minidl conv2d: no kernel for tensors on ", input.device());
  cpu::im2col(input, s, cols);
}

void col2im(const at::Tensor& cols, const ConvShape& s, at::Tensor& grad_input) {
#ifdef MINIDL_WITH_CUDA
  if (cols.is_cuda()) return cuda::col2im(cols, s, grad_input);
#endif
  TORCH_CHECK(cols.is_cpu(), "minidl conv2d: no kernel for tensors on ", cols.device());
  cpu::col2im(cols, s, grad_input);
}

std::atomic<bool> direct_enabled{true};

// The taps (KH*KW*C) up to which the CPU's direct loops beat im2col + GEMM: with few taps the GEMM's
// K is too short for BLAS to run near peak, and im2col's matrix costs more than the arithmetic.
constexpr int64_t kDirectMaxTaps = 32;

// Direct loops or im2col + GEMM: the one place that chooses. CUDA always takes im2col.
bool use_direct(const at::Tensor& input, const ConvShape& s) {
  return input.is_cpu() && s.taps() <= kDirectMaxTaps && direct_enabled.load(std::memory_order_relaxed);
}

// Uninitialised and contiguous; on the CPU from the cache of freed blocks (no page faults per call).
at::Tensor new_buffer(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return options.device().is_cpu() ? cpu::empty_output(sizes, options) : at::empty(sizes, options);
}

// An uninitialised [N, C, H, W] in `format`, with at::empty's strides.
at::Tensor new_image(int64_t n, int64_t c, int64_t h, int64_t w, const at::TensorOptions& options,
                     at::MemoryFormat format) {
  if (options.device().is_cpu()) return cpu::empty_output({n, c, h, w}, options, format);
  return at::empty({n, c, h, w}, options.memory_format(format));
}

// [N, C, H, W] (of any strides) as the matrix [N*H*W, C]: a view when channels-last, else a copy.
at::Tensor as_rows(const at::Tensor& t) {
  const at::Tensor rows = t.permute({0, 2, 3, 1});
  if (rows.is_contiguous()) return rows.reshape({-1, t.size(1)});
  if (!t.is_cpu() || !t.is_contiguous()) return rows.reshape({-1, t.size(1)});
  at::Tensor out = new_buffer({t.size(0) * t.size(2) * t.size(3), t.size(1)}, t.options());
  cpu::transpose_batched(t, t.size(0), t.size(1), t.size(2) * t.size(3), out);  // tiled, unlike a strided copy
  return out;
}

// output [N, O, OH, OW], contiguous, from its rows [N*OH*OW, O].
void rows_to_contiguous(const at::Tensor& rows, const ConvShape& s, at::Tensor& output) {
  if (output.is_cpu()) return cpu::transpose_batched(rows, s.n, s.oh * s.ow, s.o, output);
  output.copy_(rows.view({s.n, s.oh, s.ow, s.o}).permute({0, 3, 1, 2}));
}

// The weight as [O, KH*KW*C], channel fastest: a view of a channels-last weight, else a copy.
at::Tensor weight_matrix(const at::Tensor& weight) {
  return weight.permute({0, 2, 3, 1}).reshape({weight.size(0), -1});
}

// The window matrix's bytes per chunk of images on the CPU: small enough to stay in a core's L2
// cache from im2col's writes to the product's reads, which a large batch's whole matrix would not
// (the eval forward of 1,000 digit pairs: 18 MB). 0: the whole batch at once.
std::atomic<int64_t> chunk_bytes{int64_t{1} << 20};

// Images per chunk: at least one; on CUDA, the whole batch.
int64_t chunk_images(const at::Tensor& input, const ConvShape& s) {
  const int64_t budget = chunk_bytes.load(std::memory_order_relaxed);
  if (!input.is_cpu() || budget <= 0) return std::max<int64_t>(s.n, 1);
  const int64_t per_image = std::max<int64_t>(s.oh * s.ow * s.taps() * input.element_size(), 1);
  return std::max<int64_t>(budget / per_image, 1);
}

std::atomic<bool> winograd_enabled{true};

enum class Algorithm { kDirect, kWinograd, kGemm };

// The one choice per call (the switches are read once: a test toggling one meanwhile cannot make a call take
// two): direct loops for few taps, Winograd's F(2x2, 3x3) (cpu/winograd.cpp) where it fits (2.25x fewer
// products), else im2col + GEMM.
Algorithm choose(const at::Tensor& input, const ConvShape& s) {
  if (use_direct(input, s)) return Algorithm::kDirect;
  const bool winograd = input.is_cpu() && cpu::winograd_fits(s) && winograd_enabled.load(std::memory_order_relaxed);
  return winograd ? Algorithm::kWinograd : Algorithm::kGemm;
}

// Images per chunk of Winograd's tiles: the chunk's transformed tiles or products ([16, tiles, max(C, O)]) within
// chunk_bytes, as im2col's matrix.
int64_t winograd_chunk(const ConvShape& s, int64_t element_size) {
  const int64_t budget = chunk_bytes.load(std::memory_order_relaxed);
  if (budget <= 0) return std::max<int64_t>(s.n, 1);
  const int64_t per_image = std::max<int64_t>(16 * (s.oh / 2) * (s.ow / 2) * std::max(s.c, s.o) * element_size, 1);
  return std::max<int64_t>(budget / per_image, 1);
}

}  // namespace

bool set_conv_direct(bool enabled) { return direct_enabled.exchange(enabled); }

bool set_conv_winograd(bool enabled) { return winograd_enabled.exchange(enabled); }

int64_t set_conv_chunk_bytes(int64_t bytes) { return chunk_bytes.exchange(bytes); }

at::Tensor conv2d_forward(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                          at::IntArrayRef stride, at::IntArrayRef padding) {
  const char* op = "minidl.conv2d_forward";
  const ConvShape s = check_conv(input, weight, stride, padding, op);
  if (bias.has_value()) {
    check_like(*bias, weight, op, "bias", "weight");
    check_shape(*bias, {s.o}, op, "bias");
  }
  const at::NoGradGuard no_grad;  // see ops/linear.cpp
  const at::MemoryFormat format = output_format(input, weight);
  at::Tensor output = new_image(s.n, s.o, s.oh, s.ow, weight.options(), format);
  if (output.numel() == 0) return output;
  const bool direct = format == at::MemoryFormat::ChannelsLast;
  at::Tensor rows = direct ? as_rows(output) : new_buffer({s.positions(), s.o}, weight.options());
  const Algorithm algorithm = choose(input, s);
  if (algorithm != Algorithm::kGemm) {
    if (algorithm == Algorithm::kWinograd) {
      winograd_forward(input, weight, bias, s, winograd_chunk(s, weight.element_size()), rows);
    } else {
      cpu::conv_direct_forward(input, weight, bias, s, rows);
    }
    if (!direct) rows_to_contiguous(rows, s, output);
    return output;
  }
  const int64_t chunk = chunk_images(input, s), per_image = s.oh * s.ow;
  at::Tensor cols = new_buffer({std::min(chunk, s.n) * per_image, s.taps()}, weight.options());
  const at::Tensor w = weight_matrix(weight).t();
  for (int64_t n0 = 0; n0 < s.n; n0 += chunk) {
    ConvShape part = s;
    part.n = std::min(chunk, s.n - n0);
    at::Tensor part_cols = cols.narrow(0, 0, part.positions());
    at::Tensor part_rows = rows.narrow(0, n0 * per_image, part.positions());
    im2col(input.narrow(0, n0, part.n), part, part_cols);
    if (bias.has_value()) {
      at::addmm_out(part_rows, *bias, part_cols, w);
    } else {
      at::mm_out(part_rows, part_cols, w);
    }
  }
  if (!direct) rows_to_contiguous(rows, s, output);
  return output;
}

at::Tensor conv2d_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                           at::Tensor& grad_weight, const c10::optional<at::Tensor>& grad_bias,
                           at::IntArrayRef stride, at::IntArrayRef padding, bool input_grad) {
  const char* op = "minidl.conv2d_backward";
  const ConvShape s = check_conv(input, weight, stride, padding, op);
  check_like(grad_output, weight, op, "grad_output", "weight");
  check_shape(grad_output, {s.n, s.o, s.oh, s.ow}, op, "grad_output");
  check_like(grad_weight, weight, op, "grad_weight", "weight");
  check_shape(grad_weight, weight.sizes(), op, "grad_weight");
  if (grad_bias.has_value()) {  // every check before the first write: a bad call changes nothing
    check_like(*grad_bias, weight, op, "grad_bias", "weight");
    check_shape(*grad_bias, {s.o}, op, "grad_bias");
  }
  check_written(grad_weight, op, "grad_weight");
  if (grad_bias.has_value()) check_written(*grad_bias, op, "grad_bias");
  check_apart({{&grad_weight, "grad_weight"}, {grad_bias.has_value() ? &*grad_bias : nullptr, "grad_bias"}},
              {{&grad_output, "grad_output"}, {&input, "input"}, {&weight, "weight"}}, op);
  const at::NoGradGuard no_grad;  // see ops/linear.cpp
  const at::Tensor rows = as_rows(grad_output);  // [N*OH*OW, O]
  const Algorithm algorithm = choose(input, s);
  const bool direct = algorithm == Algorithm::kDirect;
  if (direct && s.positions() > 0) cpu::conv_direct_weight_grad(rows, input, s, grad_weight, grad_bias);
  if (direct && !input_grad) return at::empty({0}, weight.options());
  at::Tensor grad_input;
  if (input_grad) grad_input = new_image(s.n, s.c, s.h, s.w, weight.options(), output_format(input, weight));
  if (algorithm == Algorithm::kWinograd && s.positions() > 0) {
    winograd_backward(rows.contiguous(), input, weight, grad_weight, s, winograd_chunk(s, weight.element_size()),
                      grad_input);
    if (grad_bias.has_value()) {
      at::Tensor gb = *grad_bias;
      cpu::conv_bias_grad(rows, gb);
    }
    return input_grad ? grad_input : at::empty({0}, weight.options());
  }
  const int64_t chunk = chunk_images(input, s), per_image = s.oh * s.ow;
  at::Tensor cols = new_buffer({std::min(chunk, s.n) * per_image, s.taps()}, weight.options());
  const at::Tensor w = weight_matrix(weight);
  at::Tensor taps_by_out;  // the weight gradient as [KH*KW*C, O], summed over the chunks in order
  for (int64_t n0 = 0; n0 < s.n; n0 += chunk) {
    ConvShape part = s;
    part.n = std::min(chunk, s.n - n0);
    at::Tensor part_cols = cols.narrow(0, 0, part.positions());
    const at::Tensor part_rows = rows.narrow(0, n0 * per_image, part.positions());
    if (!direct) {
      im2col(input.narrow(0, n0, part.n), part, part_cols);
      // (cols.T @ rows).T: this orientation keeps BLAS efficient when the kernel has few taps (a first
      // layer), where rows.T @ cols is a poorly blocked product.
      if (taps_by_out.defined()) {
        taps_by_out.addmm_(part_cols.t(), part_rows);
      } else {
        taps_by_out = at::mm(part_cols.t(), part_rows);
      }
    }
    if (!input_grad) continue;
    // The windows' gradients, rows @ weight, in the buffer of the windows; with few taps computed as
    // (weight.T @ rows.T).T, the orientation BLAS blocks well there (see the weight gradient).
    at::Tensor part_grad = grad_input.narrow(0, n0, part.n);
    if (s.taps() < s.o) {
      at::Tensor tap_major = part_cols.view({s.taps(), part.positions()});
      at::mm_out(tap_major, w.t(), part_rows.t());
      col2im(tap_major.t(), part, part_grad);
    } else {
      at::mm_out(part_cols, part_rows, w);
      col2im(part_cols, part, part_grad);
    }
  }
  if (taps_by_out.defined()) {
    grad_weight.add_(taps_by_out.t().view({s.o, s.kh, s.kw, s.c}).permute({0, 3, 1, 2}));
    if (grad_bias.has_value()) {
      at::Tensor gb = *grad_bias;
      if (rows.is_cpu()) {
        cpu::conv_bias_grad(rows, gb);
      } else {
        gb.add_(rows.sum(0));
      }
    }
  }
  if (!input_grad) return at::empty({0}, weight.options());
  return grad_input;
}

}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CPU, m) {
  m.impl("conv2d_forward", &minidl::conv2d_forward);
  m.impl("conv2d_backward", &minidl::conv2d_backward);
}

TORCH_LIBRARY_IMPL(minidl, CUDA, m) {
  m.impl("conv2d_forward", &minidl::conv2d_forward);
  m.impl("conv2d_backward", &minidl::conv2d_backward);
}
