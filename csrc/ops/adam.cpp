// One Adam step over every parameter in one call, the arithmetic of torch.optim.Adam (not amsgrad, weight
// decay added to the gradient):
//   g = grad + weight_decay * p;  m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g^2;
//   p -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps).
// Contiguous CPU tensors take the one-pass loop of cpu/adam.cpp; CUDA tensors the kernel of cuda/adam.cu
// (registered for the CUDA key); anything else steps through ATen's ops, torch's own.
#include "adam.h"

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <torch/library.h>

#include <cmath>

#include "../checks.h"
#include "../cpu/adam.h"

namespace minidl {

AdamScalars adam_scalars(int64_t step, double lr, double beta1, double beta2, double eps, double weight_decay) {
  // As torch.optim.Adam, in double: the step count is a float there, and x ** 0.5 is pow, not sqrt.
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(beta1, t);
  const double bias_correction2 = 1.0 - std::pow(beta2, t);
  return AdamScalars{weight_decay, 1.0 - beta1, beta2, 1.0 - beta2, eps, std::pow(bias_correction2, 0.5),
                     -(lr / bias_correction1)};
}

void check_adam_step(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                     at::TensorList exp_avg_sqs, int64_t step, double lr, double beta1, double beta2, double eps,
                     double weight_decay, bool zero_grads) {
  const char* op = "minidl.adam_step_";
  TORCH_CHECK_VALUE(grads.size() == params.size(), op, ": expected as many grads as params (", params.size(),
                    "), got ", grads.size());
  TORCH_CHECK_VALUE(exp_avgs.size() == params.size() && exp_avg_sqs.size() == params.size(), op,
                    ": expected as many exp_avgs and exp_avg_sqs as params (", params.size(), "), got ",
                    exp_avgs.size(), " and ", exp_avg_sqs.size());
  TORCH_CHECK_VALUE(step >= 1, op, ": expected step >= 1 (steps count from 1), got ", step);
  TORCH_CHECK_VALUE(lr >= 0.0, op, ": expected lr >= 0, got ", lr);  // also refuses NaN
  TORCH_CHECK_VALUE(beta1 >= 0.0 && beta1 < 1.0, op, ": expected beta1 in [0, 1), got ", beta1);
  TORCH_CHECK_VALUE(beta2 >= 0.0 && beta2 < 1.0, op, ": expected beta2 in [0, 1), got ", beta2);
  TORCH_CHECK_VALUE(eps >= 0.0, op, ": expected eps >= 0, got ", eps);
  TORCH_CHECK_VALUE(weight_decay >= 0.0, op, ": expected weight_decay >= 0, got ", weight_decay);
  for (size_t i = 0; i < params.size(); ++i) {
    const Indexed name{op, "parameter", i};
    check_float(params[i], name, "param");
    check_like(grads[i], params[i], name, "grad", "param");
    check_shape(grads[i], params[i].sizes(), name, "grad");
    check_like(exp_avgs[i], params[i], name, "exp_avg", "param");
    check_shape(exp_avgs[i], params[i].sizes(), name, "exp_avg");
    check_like(exp_avg_sqs[i], params[i], name, "exp_avg_sq", "param");
    check_shape(exp_avg_sqs[i], params[i].sizes(), name, "exp_avg_sq");
    TORCH_CHECK_VALUE(!zero_grads || at::has_internal_overlap(grads[i]) != at::MemOverlap::Yes, name,
                      ": zero_grads needs gradients whose elements have memory of their own, got one of strides ",
                      grads[i].strides());
    const Named grad{&grads[i], "grad"};  // read, and written too with zero_grads
    check_apart({{&params[i], "param"}, {&exp_avgs[i], "exp_avg"}, {&exp_avg_sqs[i], "exp_avg_sq"},
                 zero_grads ? grad : Named{nullptr, "grad"}},
                {zero_grads ? Named{nullptr, "grad"} : grad}, name);
  }
}

void adam_step_aten(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                    const at::Tensor& exp_avg_sq, const AdamScalars& s, bool zero_grad) {
  const at::NoGradGuard no_grad;  // in place, as torch.optim does under no_grad
  const at::Tensor g = s.weight_decay != 0.0 ? grad.add(param, s.weight_decay) : grad;
  exp_avg.lerp_(g, s.weight1);
  exp_avg_sq.mul_(s.beta2).addcmul_(g, g, s.weight2);
  const at::Tensor denom = exp_avg_sq.sqrt().div_(s.bias_correction2_sqrt).add_(s.eps);
  param.addcdiv_(exp_avg, denom, s.neg_step_size);
  if (zero_grad) grad.zero_();
}

namespace {

void adam_step_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                int64_t step, double lr, double beta1, double beta2, double eps, double weight_decay,
                bool zero_grads) {
  check_adam_step(params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps, weight_decay, zero_grads);
  const AdamScalars s = adam_scalars(step, lr, beta1, beta2, eps, weight_decay);
  // Parameter by parameter, in order: a list that names a tensor twice steps it twice, the second
  // step seeing the first, as in the Python fallback.
  for (size_t i = 0; i < params.size(); ++i) {
    const bool direct = params[i].is_cpu() && params[i].is_contiguous() && grads[i].is_contiguous() &&
                        exp_avgs[i].is_contiguous() && exp_avg_sqs[i].is_contiguous();
    if (direct) {
      cpu::adam_step_contiguous(params[i], grads[i], exp_avgs[i], exp_avg_sqs[i], s, zero_grads);
    } else {
      adam_step_aten(params[i], grads[i], exp_avgs[i], exp_avg_sqs[i], s, zero_grads);
    }
  }
}

}  // namespace
}  // namespace minidl

// Device-generic (a CPU loop, else ATen; cuda/adam.cu registers the CUDA key), and registered so that it
// also runs with empty lists, which have no tensor to pick a device key from.
TORCH_LIBRARY_IMPL(minidl, CompositeExplicitAutograd, m) { m.impl("adam_step_", &minidl::adam_step_); }
