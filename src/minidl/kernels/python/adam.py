"""Adam's step in pure Python: torch.optim.Adam's own tensor operations, so the same numbers."""
from ..checks import check_not_recorded
from ..checks.adam import check_adam


def adam_step_(params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps, weight_decay, zero_grads=False):
    """One step (number `step`, counted from 1) of torch.optim.Adam's arithmetic for every parameter; exp_avgs and
    exp_avg_sqs start at zero. zero_grads: then set each gradient to zero."""
    check_not_recorded("minidl.adam_step_", locals())
    check_adam(params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps, weight_decay, zero_grads)
    step_size = lr / (1 - beta1 ** float(step))  # float steps, as torch keeps them
    bias_correction2_sqrt = (1 - beta2 ** float(step)) ** 0.5
    for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
        d = g.add(p, alpha=weight_decay) if weight_decay else g
        m.lerp_(d, 1 - beta1)
        v.mul_(beta2).addcmul_(d, d, value=1 - beta2)
        p.addcdiv_(m, v.sqrt().div_(bias_correction2_sqrt).add_(eps), value=-step_size)
        if zero_grads:
            g.zero_()
