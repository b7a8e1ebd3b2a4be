// Cross-entropy, softmax and the pairwise outer product as CUDA kernels (cuda/classify.h): the twins of
// cpu/classify.cpp, with the same per-element arithmetic and summation orders. One thread per row
// (a softmax or cross-entropy row of C classes, summed in index order): the rows of this project
// are short (2 or 10 classes) and many; one thread per output element for the outer product.
// Only c10/cuda headers, as in cuda/activation.cu.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>

#include "classify.h"

namespace minidl {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;  // a grid-stride loop covers the rest

__device__ __forceinline__ float exp_dev(float x) { return expf(x); }
__device__ __forceinline__ double exp_dev(double x) { return ::exp(x); }
__device__ __forceinline__ float log_dev(float x) { return logf(x); }
__device__ __forceinline__ double log_dev(double x) { return ::log(x); }

__device__ __forceinline__ int64_t first_index() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t stride() { return static_cast<int64_t>(blockDim.x) * gridDim.x; }

inline unsigned int blocks_for(int64_t items) {
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>((items + kThreads - 1) / kThreads, kMaxBlocks)));
}

// The softmax of one lane of n values `step` apart into y; returns (through max, sum) what cross-entropy needs.
template <typename T>
__device__ __forceinline__ T exp_shifted(const T* x, T* y, int64_t n, int64_t step, T& max) {
  T m = x[0];
  for (int64_t c = 1; c < n; ++c) {
    const T v = x[c * step];
    m = v > m || v != v ? v : m;  // NaN wins, as in torch
  }
  T s = 0;
  for (int64_t c = 0; c < n; ++c) {
    y[c * step] = exp_dev(x[c * step] - m);
    s += y[c * step];
  }
  max = m;
  return s;
}

template <typename T>
__global__ void cross_entropy_kernel(const T* __restrict__ x, const int64_t* __restrict__ target, T* __restrict__ g,
                                     double* __restrict__ row_loss, int64_t n, int64_t classes, T inv_n,
                                     int* __restrict__ bad) {
  for (int64_t r = first_index(); r < n; r += stride()) {
    const int64_t t = target[r];
    if (t < 0 || t >= classes) {  // never an index outside the row
      *bad = 1;
      continue;
    }
    const T* xr = x + r * classes;
    T* gr = g + r * classes;
    T m;
    const T s = exp_shifted(xr, gr, classes, 1, m);
    const T e_t = gr[t];
    for (int64_t c = 0; c < classes; ++c) gr[c] = (gr[c] / s) * inv_n;
    gr[t] = (e_t / s - T(1)) * inv_n;
    row_loss[r] = static_cast<double>(-((xr[t] - m) - log_dev(s)));
  }
}

template <typename T>
__global__ void softmax_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t lanes, int64_t size, int64_t inner) {
  for (int64_t l = first_index(); l < lanes; l += stride()) {
    const int64_t base = (l / inner) * size * inner + l % inner;
    T m;
    const T s = exp_shifted(x + base, y + base, size, inner, m);
    for (int64_t c = 0; c < size; ++c) y[base + c * inner] = y[base + c * inner] / s;
  }
}

template <typename T>
__global__ void softmax_backward_kernel(const T* __restrict__ g, const T* __restrict__ y, T* __restrict__ out,
                                        int64_t lanes, int64_t size, int64_t inner) {
  for (int64_t l = first_index(); l < lanes; l += stride()) {
    const int64_t base = (l / inner) * size * inner + l % inner;
    T dot = 0;
    for (int64_t c = 0; c < size; ++c) dot += g[base + c * inner] * y[base + c * inner];
    for (int64_t c = 0; c < size; ++c) out[base + c * inner] = y[base + c * inner] * (g[base + c * inner] - dot);
  }
}

template <typename T>
__global__ void pair_outer_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t n, int64_t k) {
  const int64_t items = n * k * k;
  for (int64_t idx = first_index(); idx < items; idx += stride()) {
    const int64_t r = idx / (k * k), i = (idx / k) % k, j = idx % k;
    out[idx] = x[r * 2 * k + i] * x[r * 2 * k + k + j];
  }
}

// One thread per input element (r, half, i): a sum over one row (half 0) or column (half 1) of g[r].
template <typename T>
__global__ void pair_outer_backward_kernel(const T* __restrict__ g, const T* __restrict__ x, T* __restrict__ out,
                                           int64_t n, int64_t k) {
  const int64_t items = n * 2 * k;
  for (int64_t idx = first_index(); idx < items; idx += stride()) {
    const int64_t r = idx / (2 * k), half = (idx / k) % 2, i = idx % k;
    const T* gr = g + r * k * k;
    const T* other = x + r * 2 * k + (half == 0 ? k : 0);
    T dot = 0;
    for (int64_t j = 0; j < k; ++j) dot += (half == 0 ? gr[i * k + j] : gr[j * k + i]) * other[j];
    out[idx] = dot;
  }
}

}  // namespace

bool cross_entropy_out(const at::Tensor& logits, const at::Tensor& target, at::Tensor& loss, at::Tensor& grad) {
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t n = logits.size(0), classes = logits.size(1);
  at::Tensor bad = at::zeros({1}, logits.options().dtype(at::kInt));
  at::Tensor row_loss = at::empty({n}, logits.options().dtype(at::kDouble));
  if (n > 0) {
    AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "minidl_cross_entropy_cuda", [&] {
      const scalar_t inv_n = static_cast<scalar_t>(1.0 / static_cast<double>(n));
      cross_entropy_kernel<scalar_t><<<blocks_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          logits.const_data_ptr<scalar_t>(), target.const_data_ptr<int64_t>(), grad.mutable_data_ptr<scalar_t>(),
          row_loss.mutable_data_ptr<double>(), n, classes, inv_n, bad.mutable_data_ptr<int>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  if (bad.item<int>() != 0) return false;
  // The rows' losses added by ATen's deterministic reduction, in double; the mean of no rows is NaN.
  loss.copy_(row_loss.sum().div_(static_cast<double>(n)));
  return true;
}

void softmax_out(const at::Tensor& x, at::Tensor& y, int64_t outer, int64_t size, int64_t inner) {
  const int64_t lanes = outer * inner;
  if (lanes == 0 || size == 0) return;
  const c10::cuda::CUDAGuard guard(x.device());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_softmax_cuda", [&] {
    softmax_kernel<scalar_t><<<blocks_for(lanes), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), lanes, size, inner);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void softmax_backward_out(const at::Tensor& g, const at::Tensor& y, at::Tensor& out, int64_t outer, int64_t size,
                          int64_t inner) {
  const int64_t lanes = outer * inner;
  if (lanes == 0 || size == 0) return;
  const c10::cuda::CUDAGuard guard(y.device());
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "minidl_softmax_backward_cuda", [&] {
    softmax_backward_kernel<scalar_t><<<blocks_for(lanes), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        g.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), lanes, size,
        inner);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void pair_outer_out(const at::Tensor& x, at::Tensor& out) {
  const int64_t n = x.size(0), k = x.size(2);
  if (out.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(x.device());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_pair_outer_cuda", [&] {
    pair_outer_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n, k);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void pair_outer_backward_out(const at::Tensor& g, const at::Tensor& x, at::Tensor& out) {
  const int64_t n = x.size(0), k = x.size(2);
  if (out.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(x.device());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_pair_outer_backward_cuda", [&] {
    pair_outer_backward_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n, k);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace cuda
}  // namespace minidl
