// MaxPool2d's ops as CUDA kernels: the twins of ops/pool.cpp and cpu/pool.cpp, with the same checks,
// tie and NaN rules and memory formats. The backward gathers (one thread per input element, its
// windows in order) rather than scattering with atomics: deterministic, and in the CPU's order.
// An index outside its plane is refused, as on the CPU; one inside the plane but outside its own window
// matches no element the gather visits, so it adds nothing (the CPU kernel adds it there; torch's CUDA
// kernel drops it too).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>

#include "../layer_checks.h"

namespace minidl {
namespace {

constexpr int kThreads = 256;

struct Dims {
  int64_t N, C, H, W, OH, OW, kh, kw, sh, sw;
  bool channels_last;
};

// The offset of element (n, c, h, w) of a [N, C, rows, cols] tensor in the given memory order.
__device__ __forceinline__ int64_t offset(const Dims& d, int64_t n, int64_t c, int64_t h, int64_t w, int64_t rows,
                                          int64_t cols) {
  return d.channels_last ? ((n * rows + h) * cols + w) * d.C + c : ((n * d.C + c) * rows + h) * cols + w;
}

// (n, c, h, w) of the element at offset i of a [N, C, rows, cols] tensor in the given memory order.
__device__ __forceinline__ void position(const Dims& d, int64_t i, int64_t rows, int64_t cols, int64_t& n, int64_t& c,
                                         int64_t& h, int64_t& w) {
  if (d.channels_last) {
    c = i % d.C;
    w = i / d.C % cols;
    h = i / (d.C * cols) % rows;
    n = i / (d.C * cols * rows);
  } else {
    w = i % cols;
    h = i / cols % rows;
    c = i / (cols * rows) % d.C;
    n = i / (cols * rows * d.C);
  }
}

template <typename T>
__global__ void forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t* __restrict__ idx, Dims d,
                               int64_t total) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    int64_t n, c, oh, ow;
    position(d, i, d.OH, d.OW, n, c, oh, ow);
    const int64_t h0 = oh * d.sh, w0 = ow * d.sw;
    T m = -INFINITY;
    int64_t k = h0 * d.W + w0;
    for (int64_t h = h0; h < h0 + d.kh; ++h) {
      for (int64_t w = w0; w < w0 + d.kw; ++w) {
        const T v = x[offset(d, n, c, h, w, d.H, d.W)];
        if (v > m || v != v) {
          m = v;
          k = h * d.W + w;
        }
      }
    }
    y[i] = m;
    idx[i] = k;
  }
}

template <typename T>
__global__ void backward_kernel(const T* __restrict__ g, const int64_t* __restrict__ idx, T* __restrict__ gi, Dims d,
                                int64_t total) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    int64_t n, c, h, w;
    position(d, i, d.H, d.W, n, c, h, w);
    // The windows that contain (h, w): oh * sh <= h < oh * sh + kh, likewise for w.
    const int64_t oh0 = h < d.kh ? 0 : (h - d.kh) / d.sh + 1, oh1 = std::min(d.OH - 1, h / d.sh);
    const int64_t ow0 = w < d.kw ? 0 : (w - d.kw) / d.sw + 1, ow1 = std::min(d.OW - 1, w / d.sw);
    const int64_t self = h * d.W + w;
    T sum = T(0);
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t o = offset(d, n, c, oh, ow, d.OH, d.OW);
        if (idx[o] == self) sum += g[o];
      }
    }
    gi[i] = sum;
  }
}

unsigned int blocks_for(int64_t total) {
  return static_cast<unsigned int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
}

at::MemoryFormat format_of(const at::Tensor& input) {
  return input.suggest_memory_format() == at::MemoryFormat::ChannelsLast ? at::MemoryFormat::ChannelsLast
                                                                         : at::MemoryFormat::Contiguous;
}

Dims dims_of(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride, int64_t OH, int64_t OW,
             at::MemoryFormat format) {
  return {input.size(0), input.size(1), input.size(2), input.size(3), OH, OW, kernel_size[0], kernel_size[1],
          stride[0], stride[1], format == at::MemoryFormat::ChannelsLast};
}

void check_cuda(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.is_cuda(), op, ": CUDA kernel got a tensor on ", t.device());
}

std::tuple<at::Tensor, at::Tensor> maxpool2d_forward_cuda(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                          at::IntArrayRef stride) {
  const char* op = "minidl.maxpool2d_forward";
  const auto shape = check_maxpool2d(input, kernel_size, stride, op);
  check_cuda(input, op);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::NoGradGuard no_grad;  // see ops/linear.cpp
  const at::MemoryFormat format = format_of(input);
  at::Tensor x = input.contiguous(format);
  at::Tensor out = at::empty(shape, x.options().memory_format(format));
  at::Tensor indices = at::empty(shape, x.options().dtype(at::kLong).memory_format(format));
  const int64_t total = out.numel();
  if (total == 0) return {out, indices};
  const Dims d = dims_of(x, kernel_size, stride, shape[2], shape[3], format);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_maxpool2d_forward_cuda", [&] {
    forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), indices.mutable_data_ptr<int64_t>(), d, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, indices};
}

at::Tensor maxpool2d_backward_cuda(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& indices,
                                  at::IntArrayRef kernel_size, at::IntArrayRef stride) {
  const char* op = "minidl.maxpool2d_backward";
  check_maxpool2d_backward(grad_output, input, indices, kernel_size, stride, op);
  check_cuda(input, op);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::NoGradGuard no_grad;
  const at::MemoryFormat format = format_of(input);
  at::Tensor grad_input = at::empty(input.sizes(), input.options().memory_format(format));
  const int64_t total = grad_input.numel();
  if (total == 0) return grad_input;
  at::Tensor g = grad_output.contiguous(format), idx = indices.contiguous(format);
  const int64_t plane = input.size(2) * input.size(3);  // one synchronisation, for the CPU kernel's error
  TORCH_CHECK_INDEX(!idx.lt(0).logical_or_(idx.ge(plane)).any().item<bool>(), op, ": expected indices in [0, ", plane,
                    ") for input of shape ", input.sizes(), ", got one outside");
  const Dims d = dims_of(input, kernel_size, stride, g.size(2), g.size(3), format);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "minidl_maxpool2d_backward_cuda", [&] {
    backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        g.const_data_ptr<scalar_t>(), idx.const_data_ptr<int64_t>(), grad_input.mutable_data_ptr<scalar_t>(), d,
        total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_input;
}

}  // namespace
}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CUDA, m) {
  m.impl("maxpool2d_forward", &minidl::maxpool2d_forward_cuda);
  m.impl("maxpool2d_backward", &minidl::maxpool2d_backward_cuda);
}
