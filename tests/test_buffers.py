"""Modes and buffers: train()/eval() through containers; buffers in state_dict, dl.save/dl.load and to();
and the library's answers to misuse (non-float dtypes, a state_dict that is not one, pairs that are not tensors)."""
import pytest
import torch

import minidl as dl


class RunningMean(dl.Module):
    """y = x - mean: in training the batch's mean, which also updates a running mean (a buffer, as in
    batch norm); in evaluation the running mean. `seen` counts batches (an integer buffer)."""

    buffer_names = ("running_mean", "seen")

    def __init__(self, features, momentum=0.5, dtype=torch.float32):
        self.momentum = momentum
        self.running_mean = torch.zeros(features, dtype=dtype)
        self.seen = torch.zeros((), dtype=torch.int64)

    def forward_ctx(self, ctx, input):
        if not self.training:
            return input - self.running_mean
        mean = input.mean(0)
        self.running_mean.mul_(1 - self.momentum).add_(mean, alpha=self.momentum)
        self.seen += 1
        return input - mean

    def backward_ctx(self, ctx, grad_output):
        return grad_output - grad_output.mean(0) if self.training else grad_output


def _net():
    torch.manual_seed(50)
    return dl.Sequential(dl.Linear(3, 4), RunningMean(4), dl.Sequential(dl.Tanh(), dl.Linear(4, 2), RunningMean(2)))


def _modules(module):
    yield module
    for _, m in module.named_children():
        yield from _modules(m)


def test_train_and_eval_reach_nested_modules():
    net = _net()
    assert all(m.training for m in _modules(net))
    assert net.eval() is net
    assert len(list(_modules(net))) == 7 and not any(m.training for m in _modules(net))
    net[2].train()
    assert [m.training for m in _modules(net)] == [False, False, False, True, True, True, True]
    assert net.train() is net and all(m.training for m in _modules(net))


def test_eval_mode_changes_what_a_module_computes(backend_name):
    net = _net()
    x = torch.randn(8, 3)
    net.forward(x)
    net.eval()
    mean, h = net[1].running_mean.clone(), torch.randn(8, 4)
    y = net[1].forward(h)
    torch.testing.assert_close(y, h - mean, rtol=0, atol=0)
    assert torch.equal(net[1].running_mean, mean)  # evaluation leaves the statistics alone


def test_buffers_round_trip_through_save_and_load(backend_name, tmp_path):
    net, other = _net(), _net()
    for _ in range(3):
        net.forward(torch.randn(8, 3))
    sd = net.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.1.weight", "2.1.bias", "1.running_mean", "1.seen",
                        "2.2.running_mean", "2.2.seen"]
    assert sd["1.running_mean"] is net[1].running_mean and int(sd["1.seen"]) == 3
    dl.save(sd, tmp_path / "net.pt")
    buffer = other[1].running_mean
    other.load_state_dict(dl.load(tmp_path / "net.pt"))
    assert other[1].running_mean is buffer  # loaded in place
    for (name, a), b in zip(net.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    net.eval(), other.eval()
    x = torch.randn(5, 3)
    assert torch.equal(net.forward(x), other.forward(x))


def test_load_state_dict_checks_buffers_like_parameters():
    net = _net()
    sd = dict(net.state_dict())
    sd["1.running_mean"] = torch.zeros(5)
    with pytest.raises(ValueError, match=r"load_state_dict: 1.running_mean expected shape \[4\], got \[5\]"):
        net.load_state_dict(sd)
    sd.pop("1.running_mean")
    with pytest.raises(KeyError, match=r"missing keys \['1.running_mean'\], unexpected keys \[\]"):
        net.load_state_dict(sd)


def test_to_carries_buffers_and_keeps_integer_ones_integer(backend_name):
    net = _net()
    net.forward(torch.randn(8, 3))
    buffer, running = net[1].running_mean, net[1].running_mean.clone()
    opt = dl.SGD(net, lr=0.1)
    assert net.to(dtype=torch.float64) is net
    assert net[1].running_mean is buffer and buffer.dtype == torch.float64  # moved in place
    torch.testing.assert_close(buffer, running.double(), rtol=0, atol=0)
    assert net[1].seen.dtype == torch.int64 and int(net[1].seen) == 1
    assert all(p.dtype == torch.float64 and p is q for (p, _), (q, _) in zip(net.param(), opt.params))
    y = net.forward(torch.randn(8, 3, dtype=torch.float64))
    assert y.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.float16, "float64"])
def test_to_refuses_a_dtype_the_kernels_do_not_take(dtype):
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(TypeError, match=rf"^Sequential\(Linear\(3, 4.*\.to: expected dtype float32 or float64 "
                                        rf"\(what the kernels take\), got {dtype!r}"):
        net.to(dtype=dtype)
    for k, v in net.state_dict().items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k


@pytest.mark.parametrize("value", [None, [("0.weight", torch.zeros(4, 3))], "net.pt"])
def test_load_state_dict_of_something_else_names_the_module_and_what_it_expects(value):
    net = _net()
    with pytest.raises(TypeError, match=rf"^Sequential\(.*\.load_state_dict: expected a dict of tensors like "
                                        rf"state_dict\(\) returns, got {type(value).__name__}$"):
        net.load_state_dict(value)


@pytest.mark.parametrize("pair, got", [((torch.zeros(2), [0.0, 0.0]), "Tensor, list"),
                                       ((1.0, torch.zeros(2)), "float, Tensor")])
def test_sgd_refuses_pairs_that_are_not_tensors(pair, got):
    with pytest.raises(TypeError, match=rf"^SGD: expected \(parameter, gradient\) pairs of tensors as returned by "
                                        rf"Module.param\(\), got \({got}\) at position 1$"):
        dl.SGD([(torch.zeros(3), torch.zeros(3)), pair], lr=0.1)
