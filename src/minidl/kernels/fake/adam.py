"""The shape function of minidl.adam_step_: it mutates its arguments and returns nothing."""
import torch

from ..checks.adam import check_adam


@torch.library.register_fake("minidl::adam_step_")
def _adam_step_(params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps, weight_decay, zero_grads=False):
    check_adam(params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps, weight_decay, zero_grads)
