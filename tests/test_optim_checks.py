"""Optimizer input checks on both backends: hyperparameters set after construction, checked at each step; the
scalars of minidl.sgd_step_; the containers SGD and Adam take."""
import pytest
import torch

import minidl as dl
from conftest import require_cpp

NAN = float("nan")


def _pairs():
    return [(torch.ones(3, 2), torch.full((3, 2), 0.5)), (torch.ones(4), torch.full((4,), 0.5))]


def _optimizer(owner, pairs):
    return dl.SGD(pairs, lr=0.1, momentum=0.9) if owner == "SGD" else dl.Adam(pairs, lr=0.1)


NOT_NUMBERS = [  # (optimizer, attribute, value set after construction, message after "<optimizer>.step: ")
    ("SGD", "lr", None, "expected lr to be a number, got NoneType None"),
    ("SGD", "momentum", "0.9", "expected momentum to be a number, got str '0.9'"),
    ("SGD", "weight_decay", True, "expected weight_decay to be a number, got bool True"),
    ("Adam", "lr", None, "expected lr to be a number, got NoneType None"),
    ("Adam", "betas", None, "expected betas to be a pair of numbers, got None"),
    ("Adam", "betas", (0.9, "0.999"), "expected beta2 to be a number, got str '0.999'"),
    ("Adam", "eps", None, "expected eps to be a number, got NoneType None"),
    ("Adam", "weight_decay", [0.1], "expected weight_decay to be a number, got list [0.1]"),
]


@pytest.mark.parametrize("owner,name,value,message", NOT_NUMBERS)
def test_a_hyperparameter_set_to_a_non_number_is_refused_at_step_in_one_line(backend_name, owner, name, value,
                                                                             message):
    pairs = _pairs()
    opt = _optimizer(owner, pairs)
    setattr(opt, name, value)
    with pytest.raises(TypeError) as info:
        opt.step()
    assert str(info.value) == f"{owner}.step: {message}"
    assert all(torch.equal(p, torch.ones_like(p)) for p, _ in pairs)


BAD_SGD_SCALARS = [  # (lr, momentum, weight_decay, message after "minidl.sgd_step_: ")
    (NAN, 0.9, 0.0, "expected lr >= 0, got nan"),
    (-0.1, 0.9, 0.0, "expected lr >= 0, got -0.1"),
    (0.1, -0.5, 0.0, "expected momentum >= 0, got -0.5"),
    (0.1, NAN, 0.0, "expected momentum >= 0, got nan"),
    (0.1, 0.9, -1.0, "expected weight_decay >= 0, got -1"),
    (0.1, 0.0, NAN, "expected weight_decay >= 0, got nan"),
]


@pytest.mark.parametrize("lr,momentum,weight_decay,message", BAD_SGD_SCALARS)
def test_sgd_step_refuses_nan_and_negative_scalars_before_any_write(ops, lr, momentum, weight_decay, message):
    params, grads = [torch.ones(3, 2), torch.ones(4)], [torch.ones(3, 2), torch.ones(4)]
    buffers = [torch.ones(3, 2), torch.ones(4)]
    with pytest.raises(ValueError) as info:
        ops.sgd_step_(params, grads, buffers, lr, momentum, weight_decay)
    assert str(info.value) == f"minidl.sgd_step_: {message}"  # the same words from C++ and Python
    assert all(torch.equal(t, torch.ones_like(t)) for t in params + buffers)


@pytest.mark.parametrize("lr,momentum,weight_decay,message", BAD_SGD_SCALARS[:1] + BAD_SGD_SCALARS[2:3])
def test_sgd_step_fake_kernel_refuses_them_too(lr, momentum, weight_decay, message):
    require_cpp()  # torch.ops.minidl is defined by the extension
    meta = [torch.ones(3, 2, device="meta")]
    with pytest.raises(ValueError, match=f"^minidl.sgd_step_: {message}$"):
        torch.ops.minidl.sgd_step_(meta, meta, meta, lr, momentum, weight_decay)


@pytest.mark.parametrize("name,value,message", [("lr", NAN, "expected lr >= 0, got nan"),
                                                ("lr", -0.1, "expected lr >= 0, got -0.1"),
                                                ("momentum", -0.9, "expected momentum >= 0, got -0.9"),
                                                ("weight_decay", NAN, "expected weight_decay >= 0, got nan")])
def test_sgd_refuses_a_nan_or_negative_hyperparameter_at_step_without_writing(backend_name, name, value, message):
    pairs = _pairs()
    opt = dl.SGD(pairs, lr=0.1)
    setattr(opt, name, value)
    with pytest.raises(ValueError) as info:
        opt.step()
    assert str(info.value) == f"SGD.step: minidl.sgd_step_: {message}"
    assert all(torch.equal(p, torch.ones_like(p)) for p, _ in pairs)
    setattr(opt, name, 0)  # allowed at step time: CosineAnnealingLR with eta_min=0 sets lr to 0 at T_max
    opt.step()
    assert all(torch.equal(p, torch.full_like(p, 1 - 0.05 * (name != "lr"))) for p, _ in pairs)


@pytest.mark.parametrize("owner", ["SGD", "Adam"])
@pytest.mark.parametrize("params,got", [(None, "NoneType"), (torch.nn.Linear(2, 2), "Linear"), (0.1, "float")])
def test_a_container_that_is_not_iterable_is_refused_naming_the_optimizer(owner, params, got):
    with pytest.raises(TypeError) as info:
        getattr(dl, owner)(params, lr=0.1)
    assert str(info.value) == (f"{owner}: expected a minidl Module or an iterable of (parameter, gradient) pairs as "
                               f"returned by Module.param(), got {got}")


@pytest.mark.parametrize("scalars,message", [
    ((-1.0, 0.9, 0.999, 1e-8, 0.0), "expected lr >= 0, got -1"),
    ((0.1, 1.5, 0.999, 1e-8, 0.0), "expected beta1 in [0, 1), got 1.5"),
    ((0.1, 0.9, 0.999, -1e-8, 0.0), "expected eps >= 0, got -1e-08"),
    ((0.1, 0.9, 0.999, 1e-8, NAN), "expected weight_decay >= 0, got nan"),
])
def test_adam_step_refuses_bad_scalars_in_the_same_words_on_both_backends(ops, scalars, message):
    params, state = [torch.ones(3)], [torch.zeros(3)]
    with pytest.raises(ValueError) as info:
        ops.adam_step_(params, [torch.ones(3)], state, [torch.zeros(3)], 1, *scalars)
    assert str(info.value) == f"minidl.adam_step_: {message}"  # before, from Python: "got -1.0", "got -1e-08"
    assert torch.equal(params[0], torch.ones(3)) and torch.equal(state[0], torch.zeros(3))


@pytest.mark.parametrize("owner", ["SGD", "Adam"])
def test_a_tensor_lr_steps_as_its_value(backend_name, owner):
    """torch.optim takes a tensor lr; a schedule or a user may set one."""
    stepped = []
    for lr in (0.05, torch.tensor(0.05)):
        pairs = _pairs()
        opt = _optimizer(owner, pairs)
        opt.lr = lr
        opt.step()
        stepped.append([p.clone() for p, _ in pairs])
    assert all(torch.equal(a, b) for a, b in zip(*stepped))
