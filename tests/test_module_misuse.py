"""Settings torch.nn takes, and mistakes a user makes, at the Module layer: each works as in torch.nn or gets one
line naming the module, on both backends."""
import fractions

import pytest
import torch

import minidl as dl
from minidl import backend

F64 = dict(dtype=torch.float64)


@pytest.mark.parametrize("fused", [False, True])
def test_batch_norm_with_momentum_none_evaluates(backend_name, fused):
    torch.manual_seed(0)
    x = torch.randn(6, 3, 4, 4, **F64)
    ours, theirs = dl.BatchNorm2d(3, momentum=None, **F64), torch.nn.BatchNorm2d(3, momentum=None, **F64)
    net = dl.Sequential(dl.MaxPool2d(2), ours, dl.ReLU()) if fused else ours
    reference = torch.nn.Sequential(torch.nn.MaxPool2d(2), theirs, torch.nn.ReLU()) if fused else theirs
    assert len(net.blocks if fused else ()) == int(fused)
    for _ in range(2):  # training batches: the cumulative average
        torch.testing.assert_close(net(x), reference(x).detach())
    net.eval(), reference.eval()
    torch.testing.assert_close(net(x), reference(x).detach())  # before: a TypeError from the kernel
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    assert int(ours.num_batches_tracked) == 2


def test_a_pooling_window_too_large_to_fuse_runs_module_by_module(backend_name):
    torch.manual_seed(0)
    x = torch.randn(4, 2, 17, 17, **F64)
    modules = (dl.MaxPool2d(17), dl.BatchNorm2d(2, **F64), dl.ReLU())
    net = dl.Sequential(*modules)
    assert net.blocks == ()  # the fused kernels keep positions in a byte: 289 > 256
    out = net(x)
    reference = torch.nn.Sequential(torch.nn.MaxPool2d(17), torch.nn.BatchNorm2d(2, **F64), torch.nn.ReLU())
    torch.testing.assert_close(out, reference(x).detach())
    grad = torch.randn_like(out)
    net.backward(grad)
    expected = torch.autograd.grad(reference(x.requires_grad_()), [reference[1].weight], grad)[0]
    torch.testing.assert_close(modules[1].grad_weight, expected)


def test_batch_norm_eval_mean_is_not_running_mean(backend_name):
    """The mean an evaluation forward returns is the caller's: a later change to running_mean leaves it be."""
    x = torch.randn(5, 3, **F64)
    running_mean, running_var = torch.randn(3, **F64), torch.rand(3, **F64) + 0.5
    _, mean, _ = backend.ops.batch_norm_forward(x, torch.ones(3, **F64), torch.zeros(3, **F64), running_mean,
                                                running_var, False, 0.1, 1e-5)
    kept = running_mean.clone()
    running_mean.add_(1)
    torch.testing.assert_close(mean, kept, rtol=0, atol=0)  # before, on the Python backend: running_mean itself


def _with_generator(module, generator):
    module.generator = generator
    return module


@pytest.mark.parametrize("call, fragment", [
    (lambda: dl.BatchNorm1d(3, eps="x"), "BatchNorm1d: expected eps to be a number, got 'x'"),
    (lambda: dl.Flatten()([1, 2]),
     "Flatten(start_dim=1, end_dim=-1).forward: expected input to be a torch.Tensor, got list"),
    (lambda: dl.Dropout(0.5).eval()([1, 2]), "Dropout(p=0.5).forward: expected input to be a torch.Tensor, got list"),
    (lambda: dl.Dropout(0).backward_ctx(dl.Dropout(0).call(torch.ones(2))[1], [1.0]),
     "Dropout(p=0).backward: expected grad_output to be a torch.Tensor, got list"),
    (lambda: _with_generator(dl.Dropout(0.5), 5)(torch.ones(3)), "Dropout(p=0.5).forward: minidl.dropout_forward"),
    (lambda: _with_generator(dl.Dropout(0.5), type("Generator", (), {})())(torch.ones(3)),
     "Dropout(p=0.5).forward: minidl.dropout_forward"),  # another library's Generator
], ids=["eps", "flatten", "dropout-eval", "dropout-backward", "generator", "other-generator"])
def test_a_value_of_the_wrong_type_is_named(backend_name, call, fragment):
    with pytest.raises(TypeError) as info:
        call()
    assert fragment in str(info.value)


def test_a_kernel_call_of_the_wrong_types_says_what_the_op_takes_in_one_line(backend_name):
    with pytest.raises(TypeError) as info:
        dl.Conv2d(1, 2, 3)(torch.randn(1, 1, 5, 5).tolist())
    message = str(info.value)
    assert message.startswith("Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1)).forward: ")
    if backend_name == "cpp":  # pybind11's error, which lists every argument's value
        assert "It takes (input: Tensor, weight: Tensor, bias: Tensor | None" in message, message
        assert "\n" not in message and "tensor(" not in message, message


@pytest.mark.parametrize("grad, kind, got", [
    (torch.ones(3), ValueError, "got shape [3], torch.float32"),
    (torch.ones(1, dtype=torch.bool), ValueError, "got shape [1], torch.bool"),
    ([1.0], TypeError, "got list"),
    (True, TypeError, "got bool"),
])
def test_a_loss_gradient_must_be_one_real_value(backend_name, grad, kind, got):
    loss = dl.CrossEntropyLoss()
    loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(kind) as info:
        loss.backward(grad)  # before: broadcast into each class column, or a gradient of another shape
    assert str(info.value) == ("CrossEntropyLoss().backward: expected the loss's gradient to be one real value "
                               f"(the loss is a scalar), {got}")


def test_a_loss_gradient_scales_the_loss_gradient_in_its_dtype(backend_name):
    """As autograd casts a scalar's upstream gradient: any real dtype, a 0-d one from the CPU, any number type."""
    loss, x, target = dl.CrossEntropyLoss(), torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    loss(x, target)
    unscaled = loss.backward()
    for scale in (torch.tensor(3.0), torch.tensor([3.0]), torch.tensor([3.0], **F64), torch.tensor(3), 3.0, 3,
                  fractions.Fraction(3)):
        loss(x, target)
        torch.testing.assert_close(loss.backward(scale), 3 * unscaled)  # float32, as the loss


@pytest.mark.parametrize("loss, output, target", [
    (dl.CrossEntropyLoss, torch.randn(0, 3), torch.zeros(0, dtype=torch.long)),
    (dl.LossMSE, torch.randn(0), torch.randn(0)),
])
def test_an_empty_batch_is_named_not_blamed_on_the_learning_rate(backend_name, loss, output, target):
    name = loss.__name__
    with pytest.raises(ValueError, match=rf"^{name}: the batch is empty \(output of shape \[0(, 3)?\]\)"):
        loss()(output, target)
    assert loss(check_finite=False)(output, target).isnan()  # torch.nn's answer


def test_moving_a_module_where_torch_cannot_names_it_and_changes_nothing(backend_name):
    """Tensors are moved in place (optimizers keep them), and torch swaps no CPU tensor's data for a meta one."""
    net = dl.Sequential(dl.Linear(3, 2, device="meta"), dl.BatchNorm1d(2))  # the first moves, then one cannot
    before = [(t.dtype, t.device.type) for t in net.state_dict().values()]
    with pytest.raises(RuntimeError, match=r"^Sequential\(.*\)\.to: cannot move its tensors in place to "
                                           r"device='meta', dtype=torch.float64: "):
        net.to(device="meta", dtype=torch.float64)
    assert [(t.dtype, t.device.type) for t in net.state_dict().values()] == before  # before: a Linear moved


def _convnet(device):
    return dl.Sequential(dl.Conv2d(2, 4, 3, device=device), dl.MaxPool2d(2), dl.BatchNorm2d(4, device=device),
                         dl.ReLU(), dl.Flatten(), dl.Linear(4 * 3 * 3, 3, device=device))


def test_a_training_step_on_the_meta_device_gives_the_shapes(backend_name):
    """Shapes without data (torch's meta device): every kernel, the loss's finiteness check and the step skip values."""
    shapes = {}
    for device in ("cpu", "meta"):
        net, loss = _convnet(device), dl.CrossEntropyLoss()
        x = torch.empty(5, 2, 8, 8, device=device).normal_() if device == "cpu" else torch.empty(5, 2, 8, 8,
                                                                                                 device="meta")
        target = torch.empty(5, dtype=torch.long, device=device).random_(3)
        out = net(x)
        value = loss(out, target)  # before: Tensor.item() cannot be called on meta tensors
        grad = net.backward(loss.backward())
        dl.Adam(net, lr=0.1).step()
        shapes[device] = [tuple(t.shape) for t in (out, value, grad)] + [tuple(g.shape) for _, g in net.param()]
        assert all(g.device.type == device for _, g in net.param())
    assert shapes["meta"] == shapes["cpu"]


@pytest.mark.parametrize("modules", [lambda: (dl.Linear(3, 2), dl.ReLU()), lambda: (dl.Linear(3, 2), dl.Flatten())],
                         ids=["fused", "module-by-module"])
def test_a_sequential_context_serves_one_backward(backend_name, modules):
    net = dl.Sequential(*modules())
    x = torch.randn(4, 3)
    y, ctx = net.call(x)
    net.backward_ctx(ctx, torch.ones_like(y))
    once = net[0].grad_weight.clone()
    with pytest.raises(RuntimeError, match=r"^Sequential\(.*\)\.backward: this forward's context has served a "
                                           r"backward already; each forward serves one backward$"):
        net.backward_ctx(ctx, torch.ones_like(y))  # before: every gradient added again
    assert torch.equal(net[0].grad_weight, once)
