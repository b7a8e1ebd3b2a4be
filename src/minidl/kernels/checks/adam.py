"""Input checks of minidl.adam_step_ (the twin of check_adam_step in csrc/ops/adam.cpp, same messages)."""
from . import check_float, check_like, check_shape
from .memory import check_apart, expanded

_OP = "minidl.adam_step_"


def check_adam(params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps, weight_decay, zero_grads=False):
    n = len(params)
    if len(grads) != n:
        raise ValueError(f"{_OP}: expected as many grads as params ({n}), got {len(grads)}")
    if len(exp_avgs) != n or len(exp_avg_sqs) != n:
        raise ValueError(f"{_OP}: expected as many exp_avgs and exp_avg_sqs as params ({n}), "
                         f"got {len(exp_avgs)} and {len(exp_avg_sqs)}")
    if not step >= 1:
        raise ValueError(f"{_OP}: expected step >= 1 (steps count from 1), got {step}")
    if not lr >= 0:  # :g here and below prints as C++ does
        raise ValueError(f"{_OP}: expected lr >= 0, got {lr:g}")
    for name, value in (("beta1", beta1), ("beta2", beta2)):
        if not 0 <= value < 1:
            raise ValueError(f"{_OP}: expected {name} in [0, 1), got {value:g}")
    if not eps >= 0:
        raise ValueError(f"{_OP}: expected eps >= 0, got {eps:g}")
    if not weight_decay >= 0:
        raise ValueError(f"{_OP}: expected weight_decay >= 0, got {weight_decay:g}")
    for i, (p, g, m, v) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs)):
        name = f"{_OP} (parameter {i})"
        check_float(p, name, "param")
        for t, t_name in ((g, "grad"), (m, "exp_avg"), (v, "exp_avg_sq")):
            check_like(t, p, name, t_name, "param")
            check_shape(t, p.shape, name, t_name)
        if zero_grads and expanded(g):
            raise ValueError(f"{name}: zero_grads needs gradients whose elements have memory of their own, "
                             f"got one of strides {list(g.stride())}")
        grad = [(g, "grad")]  # read, and written too with zero_grads
        check_apart([(p, "param"), (m, "exp_avg"), (v, "exp_avg_sq")] + (grad if zero_grads else []),
                    [] if zero_grads else grad, name)
