// The geometry of a 2-d convolution, and the two device kernels that ops/conv.cpp builds it from:
// im2col (the input's windows as the rows of a matrix) and its adjoint col2im. Everything else
// is one matrix product each way, through ATen (MKL on CPU, cuBLAS on CUDA).
//
// The window matrix `cols` has one row per output position (n, oh, ow), in that order, and one
// column per (kh, kw, c), channel fastest: [N*OH*OW, KH*KW*C]. A channels-last input then gives
// rows of contiguous runs, and cols @ weight'.T is the output in channels-last order directly.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <cstdint>

namespace minidl {

struct ConvShape {
  int64_t n, c, h, w;     // input
  int64_t o, kh, kw;      // weight [o, c, kh, kw]
  int64_t sh, sw, ph, pw;  // stride, zero padding
  int64_t oh, ow;         // output
  int64_t positions() const { return n * oh * ow; }
  int64_t taps() const { return kh * kw * c; }
};

namespace cpu {
// cols [positions, taps] (contiguous, written) from input [N, C, H, W] of any strides.
void im2col(const at::Tensor& input, const ConvShape& s, at::Tensor& cols);
// grad_input [N, C, H, W] of any strides (written) = the sum of cols' entries over each element's windows;
// cols [positions, taps] of any strides.
void col2im(const at::Tensor& cols, const ConvShape& s, at::Tensor& grad_input);
// grad_bias [O] (any strides) += the column sums of rows [positions, O], the same at any thread count.
void conv_bias_grad(const at::Tensor& rows, at::Tensor& grad_bias);
// dst[i] = src[i].T for each of the `batch` matrices [rows, cols] of src; both contiguous, of one dtype.
void transpose_batched(const at::Tensor& src, int64_t batch, int64_t rows, int64_t cols, at::Tensor& dst);

// Direct loops for kernels of few taps (conv_direct.cpp), no window matrix. rows: the output as
// [positions, O], contiguous (written). Input of any strides; weight and bias of the input's dtype.
void conv_direct_forward(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                         const ConvShape& s, at::Tensor& rows);
// grad_weight [O, C, KH, KW] += the window sums of rows [positions, O] (grad_output); grad_bias [O],
// if given, += rows' column sums. Either of any strides.
void conv_direct_weight_grad(const at::Tensor& rows, const at::Tensor& input, const ConvShape& s,
                             at::Tensor& grad_weight, const c10::optional<at::Tensor>& grad_bias);

// Winograd's F(2x2, 3x3) (winograd.cpp) for 3x3 kernels of stride 1 without padding and an even output size
// (winograd_fits); P = N * OH/2 * OW/2 tiles, all tensors but the weights and the input/output contiguous.
bool winograd_fits(const ConvShape& s);
// Channels (or filters) per step of the transforms' loops, whose fixed trip counts compile to vector code.
constexpr int64_t kWinogradBlock = 16;
// U [16, C, O]: the transformed weight [O, C, 3, 3] (any strides).
void winograd_weight(const at::Tensor& weight, at::Tensor& U);
// V [16, P, C]: the input's transformed tiles.
void winograd_input(const at::Tensor& input, const ConvShape& s, at::Tensor& V);
// rows [N*OH*OW, O] (the output channels-last, written) from the 16 products M [16, P, O], plus bias.
void winograd_output(const at::Tensor& M, const ConvShape& s, const c10::optional<at::Tensor>& bias,
                     at::Tensor& rows);
// dM [16, P, O] from the output's gradient as rows [N*OH*OW, O].
void winograd_grad_output(const at::Tensor& rows, const ConvShape& s, at::Tensor& dM);
// grad_input [N, C, H, W] (any strides, written) from dV [16, P, C].
void winograd_grad_input(const at::Tensor& dV, const ConvShape& s, at::Tensor& grad_input);
// grad_weight [O, C, 3, 3] (any strides) += the weight gradient from dU [16, C, O].
void winograd_grad_weight(const at::Tensor& dU, at::Tensor& grad_weight);
}  // namespace cpu

// Winograd's F(2x2, 3x3) through ATen's matrix products (ops/conv_winograd.cpp), `chunk` images at a time, on
// the CPU: rows [N*OH*OW, O] (the output channels-last, written); and from the output's gradient as contiguous
// rows, the weight gradient (added) and grad_input (any strides, written) when it is defined.
void winograd_forward(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                      const ConvShape& s, int64_t chunk, at::Tensor& rows);
void winograd_backward(const at::Tensor& rows, const at::Tensor& input, const at::Tensor& weight,
                       at::Tensor& grad_weight, const ConvShape& s, int64_t chunk, at::Tensor& grad_input);

// For tests (minidl._C._set_conv_direct): whether CPU convolutions may take the direct loops (on by
// default); returns the previous setting.
bool set_conv_direct(bool enabled);
// For tests (minidl._C._set_conv_winograd): whether CPU convolutions may take Winograd's F(2x2, 3x3) (on by
// default); returns the previous setting.
bool set_conv_winograd(bool enabled);
// For tests (minidl._C._set_conv_chunk_bytes): the CPU's window-matrix bytes per chunk of images (0: the
// whole batch in one); returns the previous value.
int64_t set_conv_chunk_bytes(int64_t bytes);

namespace cuda {
void im2col(const at::Tensor& input, const ConvShape& s, at::Tensor& cols);
void col2im(const at::Tensor& cols, const ConvShape& s, at::Tensor& grad_input);
}  // namespace cuda

}  // namespace minidl
