// Dropout's ops, CPU and CUDA: the mask is drawn by ATen's bernoulli_ on a tensor shaped and laid out
// as torch's dropout draws it (empty_like(input)), so that one generator state gives torch's mask on
// the CPU; then on the CPU one pass scales it and multiplies, elsewhere ATen's elementwise ops do.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/bernoulli.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mul.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "../cpu/runtime/clones.h"
#include "../cpu/runtime/grain.h"
#include "../layer_checks.h"

namespace minidl {
namespace {

// mask /= q (when q > 0), y = x * mask: the arithmetic of torch's noise.div_(1 - p) and input * noise.
template <typename T>
MINIDL_CLONES void scale_and_apply(const T* x, T* mask, T* y, int64_t n, T q) {
  if (q > T(0))
    for (int64_t i = 0; i < n; ++i) mask[i] = mask[i] / q;
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * mask[i];
}

template <typename T>
MINIDL_CLONES void multiply(const T* a, const T* b, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

std::tuple<at::Tensor, at::Tensor> dropout_forward(const at::Tensor& input, double p,
                                                   const std::optional<at::Generator>& generator) {
  const char* op = "minidl.dropout_forward";
  check_dropout(input, p, generator, op);
  const at::NoGradGuard no_grad;  // see ops/linear.cpp
  // Dense tensors keep their strides (empty_like's); others are copied in the format torch would give them.
  at::Tensor x = input.is_non_overlapping_and_dense() ? input : input.contiguous(input.suggest_memory_format());
  at::Tensor mask = at::empty_like(x);
  if (p == 0) {
    mask.fill_(1);  // torch draws nothing for p = 0 or 1
  } else if (p == 1) {
    mask.zero_();
  } else {
    mask.bernoulli_(1 - p, generator);
  }
  const double q = p == 1 ? 0.0 : 1 - p;
  if (!x.is_cpu()) {
    if (q > 0 && q < 1) mask.div_(q);
    return {x.mul(mask), mask};
  }
  at::Tensor y = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "minidl_dropout_forward", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* mp = mask.mutable_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const scalar_t qs = static_cast<scalar_t>(q);
    at::parallel_for(0, x.numel(), cpu::kGrain,
                     [&](int64_t b, int64_t e) { scale_and_apply(xp + b, mp + b, yp + b, e - b, qs); });
  });
  return {y, mask};
}

at::Tensor dropout_backward(const at::Tensor& grad_output, const at::Tensor& mask) {
  const char* op = "minidl.dropout_backward";
  check_elementwise_backward(grad_output, mask, op, "mask");
  const at::NoGradGuard no_grad;
  const bool direct = mask.is_cpu() && mask.is_non_overlapping_and_dense() && grad_output.strides() == mask.strides();
  if (!direct) return grad_output.mul(mask);
  at::Tensor out = at::empty_like(mask);
  AT_DISPATCH_FLOATING_TYPES(mask.scalar_type(), "minidl_dropout_backward", [&] {
    const scalar_t* gp = grad_output.const_data_ptr<scalar_t>();
    const scalar_t* mp = mask.const_data_ptr<scalar_t>();
    scalar_t* op_ = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, mask.numel(), cpu::kGrain,
                     [&](int64_t b, int64_t e) { multiply(gp + b, mp + b, op_ + b, e - b); });
  });
  return out;
}

}  // namespace
}  // namespace minidl

TORCH_LIBRARY_IMPL(minidl, CPU, m) {
  m.impl("dropout_forward", &minidl::dropout_forward);
  m.impl("dropout_backward", &minidl::dropout_backward);
}

TORCH_LIBRARY_IMPL(minidl, CUDA, m) {
  m.impl("dropout_forward", &minidl::dropout_forward);
  m.impl("dropout_backward", &minidl::dropout_backward);
}
