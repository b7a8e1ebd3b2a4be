// im2col and col2im on CUDA (see conv.h): one thread per element written, 64-bit indices.
// col2im gathers each input element's window entries in a fixed order (no atomics), so its
// results are deterministic, as on the CPU. Only c10/cuda headers: see activation.cu.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

#include "../conv.h"

namespace minidl {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;  // a grid-stride loop covers the rest

inline unsigned int blocks_for(int64_t items) {
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>((items + kThreads - 1) / kThreads, kMaxBlocks)));
}

// x: the input as dense [N, H, W, C]; cols: [N*OH*OW, KH*KW*C], written in order (coalesced).
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ cols, ConvShape s, int64_t total) {
  const int64_t taps = s.kh * s.kw * s.c;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t pos = i / taps, tap = i % taps;
    const int64_t c = tap % s.c, kw = (tap / s.c) % s.kw, kh = tap / (s.c * s.kw);
    const int64_t ow = pos % s.ow, oh = (pos / s.ow) % s.oh, n = pos / (s.ow * s.oh);
    const int64_t ih = oh * s.sh - s.ph + kh, iw = ow * s.sw - s.pw + kw;
    const bool inside = ih >= 0 && ih < s.h && iw >= 0 && iw < s.w;
    cols[i] = inside ? x[((n * s.h + ih) * s.w + iw) * s.c + c] : T(0);
  }
}

// grad_input[n, c, ih, iw] (strides g0..g3) = the sum of its window entries, in (kh, kw) order.
template <typename T>
__global__ void col2im_kernel(const T* __restrict__ cols, int64_t ps, int64_t ts, T* __restrict__ gx, ConvShape s,
                              int64_t g0, int64_t g1, int64_t g2, int64_t g3, int64_t total) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t c = i % s.c, iw = (i / s.c) % s.w, ih = (i / (s.c * s.w)) % s.h, n = i / (s.c * s.w * s.h);
    T sum = T(0);
    for (int64_t kh = 0; kh < s.kh; ++kh) {
      const int64_t th = ih + s.ph - kh;
      if (th < 0 || th % s.sh != 0 || th / s.sh >= s.oh) continue;
      for (int64_t kw = 0; kw < s.kw; ++kw) {
        const int64_t tw = iw + s.pw - kw;
        if (tw < 0 || tw % s.sw != 0 || tw / s.sw >= s.ow) continue;
        sum += cols[((n * s.oh + th / s.sh) * s.ow + tw / s.sw) * ps + ((kh * s.kw + kw) * s.c + c) * ts];
      }
    }
    gx[n * g0 + c * g1 + ih * g2 + iw * g3] = sum;
  }
}

}  // namespace

void im2col(const at::Tensor& input, const ConvShape& s, at::Tensor& cols) {
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);  // see cpu/conv.cpp
  TORCH_INTERNAL_ASSERT(cols.is_contiguous() && cols.size(0) == s.positions() && cols.size(1) == s.taps());
  const int64_t total = cols.numel();
  if (total == 0) return;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_im2col_cuda", [&] {
    im2col_kernel<scalar_t><<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), cols.mutable_data_ptr<scalar_t>(), s, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void col2im(const at::Tensor& cols, const ConvShape& s, at::Tensor& grad_input) {
  const c10::cuda::CUDAGuard guard(cols.device());
  TORCH_INTERNAL_ASSERT(cols.dim() == 2 && cols.size(0) == s.positions() && cols.size(1) == s.taps());
  const int64_t total = grad_input.numel();
  if (total == 0) return;
  const at::IntArrayRef g = grad_input.strides();
  AT_DISPATCH_FLOATING_TYPES(cols.scalar_type(), "minidl_col2im_cuda", [&] {
    col2im_kernel<scalar_t><<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        cols.const_data_ptr<scalar_t>(), cols.stride(0), cols.stride(1), grad_input.mutable_data_ptr<scalar_t>(), s,
        g[0], g[1], g[2], g[3], total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace cuda
}  // namespace minidl
