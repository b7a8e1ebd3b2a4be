"""Each study model from minidl modules against its torch.nn twin given the same weights, float64, both backends:
forward (training and evaluation), loss, every gradient, the Adam and SGD steps and the batch-norm statistics."""
import pytest
import torch

from minidl.pairs import MODELS, TrainConfig, build_model
from minidl.pairs.dl_models import copy_from_torch
from minidl.pairs.trainers import MinidlTrainer, TorchTrainer

TOL = dict(rtol=1e-9, atol=1e-11)


def twins(name):
    """(minidl model, torch model) of NAME in float64, with the torch one's initial weights in both."""
    torch.manual_seed(0)
    ref = build_model(name, "torch").to(torch.float64)
    net = copy_from_torch(build_model(name, "minidl").to(dtype=torch.float64), ref)
    return net, ref


def batch(n=6, seed=1):
    """N pairs, their comparison targets, digit classes, and a batch order."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 2, 14, 14, generator=g, dtype=torch.float64), torch.randint(0, 2, (n,), generator=g),
            torch.randint(0, 10, (n, 2), generator=g), torch.randperm(n, generator=g))


def assert_same(net, ref):
    """Parameters, gradients and buffers of the minidl model equal the torch one's, in order."""
    params = list(ref.parameters())
    assert len(net.param()) == len(params)
    for (p, g), r in zip(net.param(), params):
        torch.testing.assert_close(p, r.detach(), **TOL)
        torch.testing.assert_close(g, r.grad, **TOL)
    buffers = list(ref.buffers())
    assert len(net.named_buffers()) == len(buffers)
    for (_, t), r in zip(net.named_buffers(), buffers):
        torch.testing.assert_close(t, r, **TOL)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("name", list(MODELS))
def test_training_steps_equal_the_torch_twin(backend_name, name, optimizer):
    net, ref = twins(name)
    config = TrainConfig(batch_size=3, lr=1e-2, optimizer=optimizer, cosine=False, aux_weight=0.7)
    mine, theirs = MinidlTrainer(net, config, "cpu"), TorchTrainer(ref, config, "cpu")
    x, y, c, order = batch()
    for epoch in range(2):
        torch.manual_seed(10 + epoch)  # the same dropout masks on both sides
        total, losses = mine.epoch(x, y, c, order)
        torch.manual_seed(10 + epoch)
        ref_total, ref_losses = theirs.epoch(x, y, c, order)
        torch.testing.assert_close(losses, ref_losses, **TOL)
        torch.testing.assert_close(total, ref_total, **TOL)
        assert_same(net, ref)  # after two steps each: gradients of the last, parameters after it
    net.eval(), ref.eval()
    with torch.no_grad():
        logits, digits = net.forward(x)
        ref_logits, ref_digits = ref(x)
    torch.testing.assert_close(logits, ref_logits, **TOL)
    assert (digits is None) == (ref_digits is None)
    if digits is not None:
        torch.testing.assert_close(digits, ref_digits, **TOL)
    assert mine.errors(x, y) == theirs.errors(x, y)


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_counts_and_shapes_match(name):
    net, ref = twins(name)
    assert [list(p.shape) for p, _ in net.param()] == [list(p.shape) for p in ref.parameters()]
    assert [list(t.shape) for _, t in net.named_buffers()] == [list(t.shape) for t in ref.buffers()]


def test_copy_from_torch_refuses_another_model():
    with pytest.raises(ValueError, match=r"^copy_from_torch: .* parameters and .* buffers in MLP\(net\), "
                                         r".* in the torch model$"):
        copy_from_torch(build_model("mlp", "minidl"), build_model("convnet", "torch"))
