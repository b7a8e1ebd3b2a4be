// One SGD step over every parameter in one call, the same arithmetic as torch.optim.SGD:
// d = g + weight_decay * p;  v = momentum * v + d (v starts at 0);  p -= lr * v  (or lr * d without momentum).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_zero.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../checks.h"
#include "../cpu/runtime/clones.h"
#include "../cpu/runtime/grain.h"

namespace minidl {
namespace {

// std::fma where ATen's add(alpha=...) fuses the multiply-add, so that the results equal
// torch.optim.SGD's bit for bit.
template <typename T>
MINIDL_CLONES void sgd_loop(T* p, T* g, T* v, int64_t n, T lr, T momentum, T weight_decay, bool zero_g) {
  for (int64_t i = 0; i < n; ++i) {
    T d = weight_decay != T(0) ? std::fma(weight_decay, p[i], g[i]) : g[i];
    if (v != nullptr) {
      v[i] = v[i] * momentum + d;
      d = v[i];
    }
    p[i] = std::fma(-lr, d, p[i]);
    if (zero_g) g[i] = T(0);  // the line is in cache already: cheaper than a later pass
  }
}

}  // namespace

void sgd_step_(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers, double lr,
               double momentum, double weight_decay, bool zero_grads) {
  const char* op = "minidl.sgd_step_";
  const bool use_momentum = momentum != 0.0;
  TORCH_CHECK_VALUE(grads.size() == params.size(), op, ": expected as many grads as params (", params.size(),
                    "), got ", grads.size());
  TORCH_CHECK_VALUE(lr >= 0.0, op, ": expected lr >= 0, got ", lr);  // also refuses NaN
  TORCH_CHECK_VALUE(momentum >= 0.0, op, ": expected momentum >= 0, got ", momentum);
  TORCH_CHECK_VALUE(weight_decay >= 0.0, op, ": expected weight_decay >= 0, got ", weight_decay);
  TORCH_CHECK_VALUE(!use_momentum || momentum_buffers.size() == params.size(), op,
                    ": expected as many momentum_buffers as params (", params.size(), "), got ",
                    momentum_buffers.size());
  for (size_t i = 0; i < params.size(); ++i) {  // every check before the first write
    const Indexed name{op, "parameter", i};
    check_float(params[i], name, "param");
    check_like(grads[i], params[i], name, "grad", "param");
    check_shape(grads[i], params[i].sizes(), name, "grad");
    TORCH_CHECK_VALUE(!zero_grads || at::has_internal_overlap(grads[i]) != at::MemOverlap::Yes, name,
                      ": zero_grads needs gradients whose elements have memory of their own, got one of strides ",
                      grads[i].strides());
    if (use_momentum) {
      check_like(momentum_buffers[i], params[i], name, "momentum_buffer", "param");
      check_shape(momentum_buffers[i], params[i].sizes(), name, "momentum_buffer");
    }
    const Named grad{&grads[i], "grad"};  // read, and written too with zero_grads
    check_apart({{&params[i], "param"}, {use_momentum ? &momentum_buffers[i] : nullptr, "momentum_buffer"},
                 zero_grads ? grad : Named{nullptr, "grad"}},
                {zero_grads ? Named{nullptr, "grad"} : grad}, name);
  }
  // Tensors the CPU loop can't take (other devices, other strides) step together through ATen's
  // _foreach ops, torch.optim.SGD's own arithmetic: on CUDA a few multi-tensor launches for the
  // whole list instead of a few per parameter. Not when two tensors of the lists share memory (a
  // list that names a tensor twice): then each entry steps in turn, so the second sees the first's
  // update, as on the CPU loop and the Python fallback.
  const at::NoGradGuard no_grad;  // the ATen paths update in place, as torch.optim does under no_grad
  c10::optional<bool> together;  // looked up only if some tensor misses the CPU loop
  std::vector<at::Tensor> other_p, other_g, other_v;
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor p = params[i];
    at::Tensor v = use_momentum ? momentum_buffers[i] : at::Tensor();
    const bool direct = p.is_cpu() && p.is_contiguous() && grads[i].is_contiguous() && (!use_momentum || v.is_contiguous());
    if (!direct && !together.has_value()) together = !shares_storage({params, grads, momentum_buffers});
    if (!direct && *together) {
      other_p.push_back(p);
      other_g.push_back(grads[i]);
      if (use_momentum) other_v.push_back(v);
      continue;
    }
    if (!direct) {  // in turn, through ATen
      at::Tensor d = weight_decay != 0.0 ? grads[i].add(p, weight_decay) : grads[i];
      if (use_momentum) d = v.mul_(momentum).add_(d);
      p.add_(d, -lr);
      if (zero_grads) grads[i].zero_();
      continue;
    }
    AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "minidl_sgd", [&] {
      scalar_t* pp = p.mutable_data_ptr<scalar_t>();
      // const_data_ptr unless we write: a copy-on-write gradient then stays shared.
      scalar_t* gp = zero_grads ? grads[i].mutable_data_ptr<scalar_t>()
                                : const_cast<scalar_t*>(grads[i].const_data_ptr<scalar_t>());
      scalar_t* vp = use_momentum ? v.mutable_data_ptr<scalar_t>() : nullptr;
      at::parallel_for(0, p.numel(), cpu::kGrain, [&](int64_t b, int64_t e) {
        sgd_loop(pp + b, gp + b, vp ? vp + b : nullptr, e - b, static_cast<scalar_t>(lr),
                 static_cast<scalar_t>(momentum), static_cast<scalar_t>(weight_decay), zero_grads);
      });
    });
  }
  if (other_p.empty()) return;
  std::vector<at::Tensor> d = weight_decay != 0.0 ? at::_foreach_add(other_g, other_p, weight_decay) : other_g;
  if (use_momentum) {
    at::_foreach_mul_(other_v, momentum);
    at::_foreach_add_(other_v, d);
    d = other_v;
  }
  at::_foreach_add_(other_p, d, -lr);
  if (zero_grads) at::_foreach_zero_(other_g);
}

}  // namespace minidl

// Device-generic (a CPU loop, else ATen), and registered so that it also runs with empty lists,
// which have no tensor to pick a device key from: a model without parameters steps as a no-op.
TORCH_LIBRARY_IMPL(minidl, CompositeExplicitAutograd, m) { m.impl("sgd_step_", &minidl::sgd_step_); }
