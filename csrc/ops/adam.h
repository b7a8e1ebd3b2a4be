// What the CPU and CUDA entries of minidl.adam_step_ share: the argument checks, the per-step
// scalars, and the ATen path for tensors the hand-written loops can't take.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace minidl {

// One step's constants, computed in double as torch.optim.Adam computes them in Python.
struct AdamScalars {
  double weight_decay;
  double weight1;        // 1 - beta1: exp_avg.lerp_(grad, weight1)
  double beta2;
  double weight2;        // 1 - beta2: exp_avg_sq * beta2 + weight2 * grad^2
  double eps;
  double bias_correction2_sqrt;  // (1 - beta2^step) ** 0.5
  double neg_step_size;          // -lr / (1 - beta1^step)
};

AdamScalars adam_scalars(int64_t step, double lr, double beta1, double beta2, double eps, double weight_decay);

// Every check of minidl.adam_step_, before any tensor is written.
void check_adam_step(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                     at::TensorList exp_avg_sqs, int64_t step, double lr, double beta1, double beta2, double eps,
                     double weight_decay, bool zero_grads);

// One parameter's step through ATen ops, torch.optim.Adam's own (any device, any strides).
void adam_step_aten(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                    const at::Tensor& exp_avg_sq, const AdamScalars& s, bool zero_grad);

}  // namespace minidl
