"""Input checks of the classification ops (cross-entropy, softmax, pairwise outer product): csrc/ops/classify.cpp's."""
from . import _check_tensor, check_dim, check_elementwise_backward, check_float, check_like, check_shape


def check_cross_entropy(logits, target):
    op = "minidl.cross_entropy_forward"
    check_float(logits, op, "logits")
    check_dim(logits, 2, op, "logits")
    _check_tensor(target, op, "target")
    if target.device != logits.device:
        raise RuntimeError(f"{op}: expected target on {logits.device} like logits, got {target.device}")
    if str(target.dtype) != "torch.int64":
        raise TypeError(f"{op}: expected target to be int64 class indices, got {target.dtype}")
    check_shape(target, [logits.shape[0]], op, "target")


def check_targets_in_range(target, classes):
    """Every target a class index, checked before any is used as one (the values: not for fake tensors)."""
    if target.numel() and not target.is_meta and bool(target.lt(0).logical_or_(target.ge(classes)).any()):
        raise ValueError(f"minidl.cross_entropy_forward: expected target values in [0, {classes}) for {classes} "
                         f"classes, got values in [{int(target.min())}, {int(target.max())}]")


def wrap_dim(dim, t, op, name):
    """dim within [-ndim, ndim) (a 0-dim tensor counts as one dimension, as in torch), made non-negative."""
    ndim = max(t.dim(), 1)
    if not -ndim <= dim < ndim:
        raise ValueError(f"{op}: expected dim in [{-ndim}, {ndim - 1}] for {name} of shape {list(t.shape)}, got {dim}")
    return dim % ndim


def check_softmax(input, dim):
    op = "minidl.softmax_forward"
    check_float(input, op, "input")
    return wrap_dim(dim, input, op, "input")


def check_softmax_backward(grad_output, output, dim):
    op = "minidl.softmax_backward"
    check_elementwise_backward(grad_output, output, op)
    return wrap_dim(dim, output, op, "output")


def check_pair_input(input, op):
    check_float(input, op, "input")
    if input.dim() != 3 or input.shape[1] != 2:
        raise ValueError(f"{op}: expected input of shape [N, 2, K], got {list(input.shape)}")


def check_pair_outer_backward(grad_output, input):
    op = "minidl.pair_outer_backward"
    check_pair_input(input, op)
    check_like(grad_output, input, op, "grad_output", "input")
    n, _, k = input.shape
    check_shape(grad_output, [n, k, k], op, "grad_output")
