// BatchNorm's ops as CUDA kernels: the twins of ops/norm.cpp and cpu/norm.cpp, with the same checks,
// statistics in double and memory formats. One block per channel: its threads stride over the
// channel's elements, and a fixed tree adds their partial sums (deterministic).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "../layer_checks.h"

namespace minidl {
namespace {

constexpr int kThreads = 256;

struct Shape {
  int64_t n, c, s;  // batch, channels, spatial elements per channel and sample
  bool rows;        // channels innermost (channels-last, or 2-D)
};

// The offset of the channel's e-th element (e < n * s).
__device__ __forceinline__ int64_t at_(const Shape& l, int64_t c, int64_t e) {
  return l.rows ? e * l.c + c : (e / l.s * l.c + c) * l.s + e % l.s;
}

// The block's sum of v (every thread gets it); `shared` holds kThreads doubles.
__device__ double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  const double sum = shared[0];
  __syncthreads();
  return sum;
}

__device__ __forceinline__ double inverse_std(double var, double eps) {
  return var == 0 && eps == 0 ? 0.0 : 1.0 / sqrt(var + eps);
}

struct ForwardArgs {
  int64_t weight_stride, bias_stride, rm_stride, rv_stride;
  bool training;
  double momentum, eps;
};

template <typename T>
__global__ void forward_kernel(const T* __restrict__ x, T* __restrict__ y, const T* w, const T* b, T* rm, T* rv,
                               T* mean_out, T* invstd_out, Shape l, ForwardArgs a) {
  __shared__ double shared[kThreads];
  const int64_t c = blockIdx.x, count = l.n * l.s;
  double mean, invstd;
  if (a.training) {
    double s = 0;
    for (int64_t e = threadIdx.x; e < count; e += kThreads) s += static_cast<double>(x[at_(l, c, e)]);
    mean = block_sum(s, shared) / count;
    double v = 0;
    for (int64_t e = threadIdx.x; e < count; e += kThreads) {
      const double d = static_cast<double>(x[at_(l, c, e)]) - mean;
      v += d * d;
    }
    const double var_sum = block_sum(v, shared);
    invstd = inverse_std(var_sum / count, a.eps);
    if (threadIdx.x == 0) {
      rm[c * a.rm_stride] = static_cast<T>(a.momentum * mean + (1 - a.momentum) * rm[c * a.rm_stride]);
      rv[c * a.rv_stride] =
          static_cast<T>(a.momentum * (var_sum / (count - 1)) + (1 - a.momentum) * rv[c * a.rv_stride]);
    }
  } else {
    mean = rm[c * a.rm_stride];
    invstd = inverse_std(rv[c * a.rv_stride], a.eps);
  }
  if (threadIdx.x == 0) {
    mean_out[c] = static_cast<T>(mean);
    invstd_out[c] = static_cast<T>(invstd);
  }
  const double scale = invstd * w[c * a.weight_stride];
  const T alpha = static_cast<T>(scale), beta = static_cast<T>(b[c * a.bias_stride] - mean * scale);
  for (int64_t e = threadIdx.x; e < count; e += kThreads) {
    const int64_t i = at_(l, c, e);
    y[i] = x[i] * alpha + beta;
  }
}

template <typename T>
__global__ void backward_kernel(const T* __restrict__ g, const T* __restrict__ x, T* __restrict__ gi, const T* w,
                                int64_t weight_stride, const T* mean, const T* invstd, T* gw, int64_t gw_stride, T* gb,
                                int64_t gb_stride, Shape l, bool training) {
  __shared__ double shared[kThreads];
  const int64_t c = blockIdx.x, count = l.n * l.s;
  const double m = mean[c], is = invstd[c];
  double gs = 0, dt = 0;
  for (int64_t e = threadIdx.x; e < count; e += kThreads) {
    const int64_t i = at_(l, c, e);
    const double gv = static_cast<double>(g[i]);
    gs += gv;
    dt += gv * (static_cast<double>(x[i]) - m);
  }
  const double gsum = block_sum(gs, shared), dot = block_sum(dt, shared);
  if (threadIdx.x == 0) {
    gw[c * gw_stride] += static_cast<T>(dot * is);
    gb[c * gb_stride] += static_cast<T>(gsum);
  }
  const T scale = static_cast<T>(is * w[c * weight_stride]);
  const T mt = mean[c];
  const T grad_mean = static_cast<T>(gsum / count), k = static_cast<T>(dot * is * is / count);
  for (int64_t e = threadIdx.x; e < count; e += kThreads) {
    const int64_t i = at_(l, c, e);
    gi[i] = training ? (g[i] - grad_mean - (x[i] - mt) * k) * scale : g[i] * scale;
  }
}

Shape shape_of(const at::Tensor& input, at::MemoryFormat& format) {
  int64_t s = 1;
  for (int64_t d = 2; d < input.dim(); ++d) s *= input.size(d);
  const bool channels_last = input.dim() == 4 && input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  return {input.size(0), input.size(1), s, channels_last || input.dim() == 2};
}

void check_cuda(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.is_cuda(), op, ": CUDA kernel got a tensor on ", t.device());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_forward_cuda(const at::Tensor& input, const at::Tensor& weight,
                                                                       const at::Tensor& bias, at::Tensor& running_mean,
                                                                       at::Tensor& running_var, bool training,
                                                                       double momentum, double eps) {
  const char* op = "minidl.batch_norm_forward";
  check_batch_norm_forward(input, weight, bias, running_mean, running_var, training, momentum, eps, op);
  check_cuda(input, op);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::NoGradGuard no_grad;  // see ops/linear.cpp
  at::MemoryFormat format;
  const Shape l = shape_of(input, format);
  at::Tensor x = input.contiguous(format);
  at::Tensor y = at::empty(x.sizes(), x.options().memory_format(format));
  at::Tensor mean = at::empty({l.c}, x.options()), invstd = at::empty({l.c}, x.options());
  if (l.c == 0) return {y, mean, invstd};
  const ForwardArgs a{weight.stride(0), bias.stride(0), running_mean.stride(0), running_var.stride(0), training,
                      momentum, eps};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_batch_norm_forward_cuda", [&] {
    forward_kernel<scalar_t><<<static_cast<unsigned int>(l.c), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
        bias.const_data_ptr<scalar_t>(), running_mean.mutable_data_ptr<scalar_t>(),
        running_var.mutable_data_ptr<scalar_t>(), mean.mutable_data_ptr<scalar_t>(),
        invstd.mutable_data_ptr<scalar_t>(), l, a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {y, mean, invstd};
}

at::Tensor batch_norm_backward_cuda(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& mean, const at::Tensor& invstd, at::Tensor& grad_weight,
                                   at::Tensor& grad_bias, bool training) {
  const char* op = "minidl.batch_norm_backward";
  check_batch_norm_backward(grad_output, input, weight, mean, invstd, grad_weight, grad_bias, op);
  check_cuda(input, op);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::NoGradGuard no_grad;
  at::MemoryFormat format;
  const Shape l = shape_of(input, format);
  at::Tensor x = input.contiguous(format), g = grad_output.contiguous(format);
  at::Tensor gi = at::empty(x.sizes(), x.options().memory_format(format));
  if (l.c == 0) return gi;
  at::Tensor m = mean.contiguous(), s = invstd.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_batch_norm_backward_cuda", [&] {
    backward_kernel<scalar_t><<<static_cast<unsigned int>(l.c), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), gi.mutable_data_ptr<scalar_t>(),
        weight.const_data_ptr<scalar_t>(), weight.stride(0), m.const_data_ptr<scalar_t>(),
        s.const_data_ptr<scalar_t>(), grad_weight.mutable_data_ptr<scalar_t>(), grad_weight.stride(0),
        grad_bias.mutable_data_ptr<scalar_t>(), grad_bias.stride(0), l, training);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gi;
}

}  // namespace
}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CUDA, m) {
  m.impl("batch_norm_forward", &minidl::batch_norm_forward_cuda);
  m.impl("batch_norm_backward", &minidl::batch_norm_backward_cuda);
}
