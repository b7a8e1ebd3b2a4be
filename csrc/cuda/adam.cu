// minidl.adam_step_ on CUDA: one launch steps many parameters (torch's multi_tensor_apply scheme). Each
// block takes one chunk of one tensor, read from a table passed by value as the kernel's argument; a list
// longer than one table takes a few launches. Elements round as on the CPU (cpu/adam.cpp): the same fused
// multiply-adds, every other operation rounded on its own. Tensors the kernel can't take (not contiguous,
// or a list that names a storage twice) step through ATen's ops, torch's own.
#include <ATen/core/Tensor.h>
#include <c10/core/DeviceGuard.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "../checks.h"
#include "../ops/adam.h"

namespace minidl {
namespace {

constexpr int kThreads = 512;
constexpr int64_t kChunk = 65536;  // elements per block
constexpr int kMaxTensors = 24;    // with kMaxBlocks, the table stays under the 4 KiB of kernel arguments
constexpr int kMaxBlocks = 320;

template <typename T>
struct Table {
  T* p[kMaxTensors];
  T* g[kMaxTensors];
  T* m[kMaxTensors];
  T* v[kMaxTensors];
  int64_t n[kMaxTensors];
  unsigned char tensor[kMaxBlocks];  // block -> its tensor and chunk
  int32_t chunk[kMaxBlocks];
};

template <typename T>
struct Constants {
  T weight_decay, weight1, beta2, weight2, eps, bias_correction2_sqrt, neg_step_size;
};

// Explicitly rounded operations: nvcc would otherwise contract a product and a sum into one fma.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ float sqrt_rn(float a) { return __fsqrt_rn(a); }
__device__ __forceinline__ double sqrt_rn(double a) { return __dsqrt_rn(a); }

template <typename T>
__global__ void adam_kernel(Table<T> table, Constants<T> c, bool small_weight, bool zero_g) {
  const int t = table.tensor[blockIdx.x];
  const int64_t begin = static_cast<int64_t>(table.chunk[blockIdx.x]) * kChunk;
  const int64_t end = begin + kChunk < table.n[t] ? begin + kChunk : table.n[t];
  T* __restrict__ p = table.p[t];
  T* __restrict__ g = table.g[t];
  T* __restrict__ m = table.m[t];
  T* __restrict__ v = table.v[t];
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const T grad = c.weight_decay != T(0) ? fma(c.weight_decay, p[i], g[i]) : g[i];
    const T diff = grad - m[i];
    const T avg = small_weight ? fma(c.weight1, diff, m[i]) : fma(c.weight1 - T(1), diff, grad);
    const T avg_sq = fma(mul_rn(c.weight2, grad), grad, mul_rn(v[i], c.beta2));
    const T denom = add_rn(div_rn(sqrt_rn(avg_sq), c.bias_correction2_sqrt), c.eps);
    m[i] = avg;
    v[i] = avg_sq;
    p[i] = add_rn(p[i], div_rn(mul_rn(c.neg_step_size, avg), denom));
    if (zero_g) g[i] = T(0);
  }
}

// Steps the given parameters (contiguous, on one device, of dtype T) in as few launches as the table allows.
template <typename T>
void launch_all(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
                const std::vector<at::Tensor>& exp_avgs, const std::vector<at::Tensor>& exp_avg_sqs,
                const AdamScalars& s, bool zero_grads) {
  const Constants<T> c{static_cast<T>(s.weight_decay), static_cast<T>(s.weight1),
                       static_cast<T>(s.beta2),        static_cast<T>(s.weight2),
                       static_cast<T>(s.eps),          static_cast<T>(s.bias_correction2_sqrt),
                       static_cast<T>(s.neg_step_size)};
  const bool small_weight = std::abs(c.weight1) < T(0.5);  // lerp's two forms, as on the CPU
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  Table<T> table;
  int tensors = 0, blocks = 0;
  auto launch = [&] {
    adam_kernel<T><<<blocks, kThreads, 0, stream>>>(table, c, small_weight, zero_grads);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t n = params[i].numel();
    if (n == 0) continue;
    table.p[tensors] = params[i].mutable_data_ptr<T>();
    // Written only to zero it: a gradient kept must not be copied on write.
    table.g[tensors] = zero_grads ? grads[i].mutable_data_ptr<T>() : const_cast<T*>(grads[i].const_data_ptr<T>());
    table.m[tensors] = exp_avgs[i].mutable_data_ptr<T>();
    table.v[tensors] = exp_avg_sqs[i].mutable_data_ptr<T>();
    table.n[tensors] = n;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    for (int64_t k = 0; k < chunks; ++k) {
      table.tensor[blocks] = static_cast<unsigned char>(tensors);
      table.chunk[blocks] = static_cast<int32_t>(k);
      ++blocks;
      const bool last_chunk = k == chunks - 1;
      if (blocks == kMaxBlocks || (last_chunk && tensors + 1 == kMaxTensors)) {
        launch();
        blocks = 0;
        if (!last_chunk) {  // the rest of this tensor goes first in the next table
          table.p[0] = table.p[tensors], table.g[0] = table.g[tensors];
          table.m[0] = table.m[tensors], table.v[0] = table.v[tensors];
          table.n[0] = n;
          tensors = 0;
        } else {
          tensors = -1;
        }
      }
    }
    ++tensors;
  }
  if (blocks > 0) launch();
}

void adam_step_cuda(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                    at::TensorList exp_avg_sqs, int64_t step, double lr, double beta1, double beta2, double eps,
                    double weight_decay, bool zero_grads) {
  check_adam_step(params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps, weight_decay, zero_grads);
  const AdamScalars s = adam_scalars(step, lr, beta1, beta2, eps, weight_decay);
  const bool batched = !shares_storage({params, grads, exp_avgs, exp_avg_sqs});  // else one after another
  using Key = std::pair<c10::DeviceIndex, at::ScalarType>;
  std::map<Key, std::vector<size_t>> groups;  // the kernel's tensors by device and dtype
  for (size_t i = 0; i < params.size(); ++i) {
    const bool direct = batched && params[i].is_cuda() && params[i].is_contiguous() && grads[i].is_contiguous() &&
                        exp_avgs[i].is_contiguous() && exp_avg_sqs[i].is_contiguous();
    if (direct) {
      groups[{params[i].device().index(), params[i].scalar_type()}].push_back(i);
    } else {
      const c10::OptionalDeviceGuard guard(params[i].device());
      adam_step_aten(params[i], grads[i], exp_avgs[i], exp_avg_sqs[i], s, zero_grads);
    }
  }
  for (const auto& [key, indices] : groups) {
    const c10::cuda::CUDAGuard guard(key.first);
    std::vector<at::Tensor> p, g, m, v;
    for (size_t i : indices) {
      p.push_back(params[i]), g.push_back(grads[i]), m.push_back(exp_avgs[i]), v.push_back(exp_avg_sqs[i]);
    }
    if (key.second == at::kDouble) {
      launch_all<double>(p, g, m, v, s, zero_grads);
    } else {
      launch_all<float>(p, g, m, v, s, zero_grads);
    }
  }
}

}  // namespace
}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CUDA, m) { m.impl("adam_step_", &minidl::adam_step_cuda); }
