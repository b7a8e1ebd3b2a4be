// Tanh and ReLU, forward and backward, as hand-written CUDA kernels: the CUDA counterparts of
// cpu/activation.cpp, with the same checks, messages and semantics (NaN propagation, contiguous
// outputs). float32 and float64 only, like the CPU kernels and the Python fallback.
//
// Each kernel is a grid-stride loop. When every pointer it touches is 16-byte aligned it moves
// 16 bytes per thread and step (4 floats or 2 doubles: one 128-bit load per operand) and finishes
// the last numel % width elements with scalar code; otherwise (e.g. a view `x[1:]`) it runs the
// scalar loop throughout. Indices are 64-bit, so tensors of 2^31 elements and more are safe.
//
// Only c10/cuda headers, not <ATen/cuda/CUDAContext.h>: that one includes the cuBLAS, cuSPARSE
// and cuSOLVER headers, which these kernels don't use and which a bare CUDA toolkit (nvcc and
// cudart only, as on the CI machines that run tools/check_cuda_compile.py) does not have.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAMacros.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "../activation.h"
#include "../checks.h"
#include "../cpu/elementwise.h"

namespace minidl {
namespace {

constexpr int kThreads = 256;
constexpr int kBlocksPerSM = 32;  // enough resident work to hide memory latency; the loop covers the rest
constexpr int kVecBytes = 16;

// kVecBytes of T, aligned so that a load or store compiles to one 128-bit access (float4/double2).
template <typename T>
struct alignas(kVecBytes) Pack {
  static constexpr int width = kVecBytes / sizeof(T);
  T v[width];
};

// ---- the elementwise functions ----------------------------------------------------------------

// tanhf / tanh from the CUDA math library: accurate (tanhf max 2 ulp), not the fast intrinsics.
__device__ __forceinline__ float tanh_dev(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_dev(double x) { return ::tanh(x); }

// Rounded products and differences (no FMA contraction): 1 - y*y rounds twice, exactly as the
// Python fallback's mul/neg/add/mul computes it.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }

struct TanhForward {
  template <typename T>
  __device__ __forceinline__ T operator()(T x) const {
    return tanh_dev(x);
  }
};

struct TanhBackward {
  template <typename T>
  __device__ __forceinline__ T operator()(T g, T y) const {
    return mul_rn(g, sub_rn(T(1), mul_rn(y, y)));
  }
};

// The CPU kernels' formulas (cpu/elementwise.h): NaN propagates as in torch.relu and
// threshold_backward.
struct ReluForward {
  template <typename T>
  __device__ __forceinline__ T operator()(T x) const {
    return cpu::relu_value(x);
  }
};

struct ReluBackward {
  template <typename T>
  __device__ __forceinline__ T operator()(T g, T y) const {
    return cpu::relu_grad(g, y);
  }
};

// ---- kernels ----------------------------------------------------------------------------------

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return static_cast<int64_t>(blockDim.x) * gridDim.x; }

// y[i] = op(x[i]); x and y 16-byte aligned.
template <typename T, typename Op>
__global__ void unary_vec_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, Op op) {
  using P = Pack<T>;
  const int64_t nvec = n / P::width;
  const int64_t stride = grid_stride();
  const P* xv = reinterpret_cast<const P*>(x);
  P* yv = reinterpret_cast<P*>(y);
  for (int64_t i = global_thread(); i < nvec; i += stride) {
    P a = xv[i];
    P r;
#pragma unroll
    for (int k = 0; k < P::width; ++k) r.v[k] = op(a.v[k]);
    yv[i] = r;
  }
  for (int64_t i = nvec * P::width + global_thread(); i < n; i += stride) y[i] = op(x[i]);
}

// y[i] = op(x[i]) with no alignment assumed.
template <typename T, typename Op>
__global__ void unary_scalar_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, Op op) {
  const int64_t stride = grid_stride();
  for (int64_t i = global_thread(); i < n; i += stride) y[i] = op(x[i]);
}

// out[i] = op(g[i], s[i]); g, s and out 16-byte aligned.
template <typename T, typename Op>
__global__ void binary_vec_kernel(const T* __restrict__ g, const T* __restrict__ s, T* __restrict__ out,
                                  int64_t n, Op op) {
  using P = Pack<T>;
  const int64_t nvec = n / P::width;
  const int64_t stride = grid_stride();
  const P* gv = reinterpret_cast<const P*>(g);
  const P* sv = reinterpret_cast<const P*>(s);
  P* ov = reinterpret_cast<P*>(out);
  for (int64_t i = global_thread(); i < nvec; i += stride) {
    P a = gv[i];
    P b = sv[i];
    P r;
#pragma unroll
    for (int k = 0; k < P::width; ++k) r.v[k] = op(a.v[k], b.v[k]);
    ov[i] = r;
  }
  for (int64_t i = nvec * P::width + global_thread(); i < n; i += stride) out[i] = op(g[i], s[i]);
}

template <typename T, typename Op>
__global__ void binary_scalar_kernel(const T* __restrict__ g, const T* __restrict__ s, T* __restrict__ out,
                                     int64_t n, Op op) {
  const int64_t stride = grid_stride();
  for (int64_t i = global_thread(); i < n; i += stride) out[i] = op(g[i], s[i]);
}

// ---- host side --------------------------------------------------------------------------------

inline bool aligned(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % kVecBytes == 0; }

// The current device's number of SMs, queried once per device.
inline int64_t sm_count() {
  static std::atomic<int> cache[C10_COMPILE_TIME_MAX_GPUS] = {};
  const c10::DeviceIndex device = c10::cuda::current_device();
  int sms = cache[device].load(std::memory_order_relaxed);
  if (sms == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    cache[device].store(sms, std::memory_order_relaxed);
  }
  return sms;
}

// Enough blocks to fill the GPU, and no more than the work needs (`items` per thread and step).
inline unsigned int grid_for(int64_t items) {
  const int64_t sms = sm_count();
  const int64_t needed = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(needed, sms * kBlocksPerSM)));
}

inline void check_cuda(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.is_cuda(), op, ": CUDA kernel got a tensor on ", t.device());
}

template <typename Op>
at::Tensor unary(const at::Tensor& input, const char* op, Op f) {
  check_float(input, op, "input");
  check_cuda(input, op);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::NoGradGuard no_grad;  // see ops/linear.cpp: contiguous() would record a graph node
  const at::MemoryFormat format = kept_format(input);
  at::Tensor x = input.contiguous(format);
  at::Tensor y = at::empty_like(x, format);
  const int64_t n = x.numel();
  if (n == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_unary_cuda", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    if (aligned(xp) && aligned(yp)) {
      const unsigned int blocks = grid_for((n + Pack<scalar_t>::width - 1) / Pack<scalar_t>::width);
      unary_vec_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(xp, yp, n, f);
    } else {
      unary_scalar_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream>>>(xp, yp, n, f);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

template <typename Op>
at::Tensor binary_backward(const at::Tensor& grad_output, const at::Tensor& saved, const char* op, Op f) {
  // Same checks and messages as the CPU kernel: a grad_output on another device (CPU, or another
  // GPU) fails here naming the op and both devices.
  check_elementwise_backward(grad_output, saved, op, "output");
  check_cuda(saved, op);
  const c10::cuda::CUDAGuard guard(saved.device());
  const at::NoGradGuard no_grad;  // see ops/linear.cpp
  const at::MemoryFormat format = kept_format(saved);
  at::Tensor g = grad_output.contiguous(format);
  at::Tensor s = saved.contiguous(format);
  at::Tensor out = at::empty_like(s, format);
  const int64_t n = s.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "minidl_binary_backward_cuda", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    scalar_t* op_ = out.mutable_data_ptr<scalar_t>();
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    if (aligned(gp) && aligned(sp) && aligned(op_)) {
      const unsigned int blocks = grid_for((n + Pack<scalar_t>::width - 1) / Pack<scalar_t>::width);
      binary_vec_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(gp, sp, op_, n, f);
    } else {
      binary_scalar_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream>>>(gp, sp, op_, n, f);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

at::Tensor tanh_forward_cuda(const at::Tensor& input) {
  return unary(input, "minidl.tanh_forward", TanhForward{});
}

at::Tensor tanh_backward_cuda(const at::Tensor& grad_output, const at::Tensor& output) {
  return binary_backward(grad_output, output, "minidl.tanh_backward", TanhBackward{});
}

at::Tensor relu_forward_cuda(const at::Tensor& input) {
  return unary(input, "minidl.relu_forward", ReluForward{});
}

at::Tensor relu_backward_cuda(const at::Tensor& grad_output, const at::Tensor& output) {
  return binary_backward(grad_output, output, "minidl.relu_backward", ReluBackward{});
}

}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CUDA, m) {
  m.impl("tanh_forward", &minidl::tanh_forward_cuda);
  m.impl("tanh_backward", &minidl::tanh_backward_cuda);
  m.impl("relu_forward", &minidl::relu_forward_cuda);
  m.impl("relu_backward", &minidl::relu_backward_cuda);
}
