"""Conv2d and the conv ops refuse bad arguments and input, naming the module or the op, before writing."""

import pytest
import torch

import minidl as dl


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_channels=0, out_channels=2, kernel_size=3), "in_channels"),
    (dict(in_channels=1, out_channels=2, kernel_size=0), "kernel_size"),
    (dict(in_channels=1, out_channels=2, kernel_size=(3, 3, 3)), "kernel_size"),
    (dict(in_channels=1, out_channels=2, kernel_size=3, stride=0), "stride"),
    (dict(in_channels=1, out_channels=2, kernel_size=3, padding=-1), "padding"),
])
def test_module_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"Conv2d: expected {match}"):
        dl.Conv2d(**kwargs)
    with pytest.raises(TypeError, match="Conv2d: expected dtype"):
        dl.Conv2d(1, 2, 3, dtype=torch.int64)


def _bad_calls():
    x, w = torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3)
    return [
        ((torch.randn(3, 5, 5), w, None, [1, 1], [0, 0]), ValueError, r"expected input with 4 dimensions, got shape \[3, 5, 5\]"),
        ((x, torch.randn(4, 3, 3), None, [1, 1], [0, 0]), ValueError, r"expected weight with 4 dimensions"),
        ((torch.randn(2, 2, 5, 5), w, None, [1, 1], [0, 0]), ValueError,
         r"expected input of shape \[N, 3, H, W\] for weight of shape \[4, 3, 3, 3\], got \[2, 2, 5, 5\]"),
        ((x.double(), w, None, [1, 1], [0, 0]), TypeError, r"expected input of dtype .*[Ff]loat.* like weight, got .*[Dd]ouble|float64"),
        ((x.long(), w.long(), None, [1, 1], [0, 0]), TypeError, r"expected weight to be float32 or float64"),
        ((torch.randn(2, 3, 2, 2), w, None, [1, 1], [0, 0]), ValueError,
         r"expected input of shape \[2, 3, 2, 2\] with padding \[0, 0\] to be at least the kernel's 3x3"),
        ((x, w, torch.randn(5), [1, 1], [0, 0]), ValueError, r"expected bias of shape \[4\], got \[5\]"),
        ((x, w, None, [0, 1], [0, 0]), ValueError, r"expected stride of two positive ints, got \[0, 1\]"),
        ((x, w, None, [1, 1], [0]), ValueError, r"expected padding of two non-negative ints, got \[0\]"),
        ((x, w, None, [1, 1], [0, 2 ** 62]), ValueError, r"expected padding of at most 2147483647, got \[0, "),
        ((x.to("meta"), w, None, [1, 1], [0, 0]), RuntimeError, r"expected input on cpu like weight, got meta"),
    ]


@pytest.mark.parametrize("index", range(len(_bad_calls())))
def test_bad_input_raises_naming_the_op(ops, index):
    args, kind, match = _bad_calls()[index]
    with pytest.raises(kind, match=r"^minidl.conv2d_forward: " + match):
        ops.conv2d_forward(*args)
    x, w, b, s, p = args
    if x.dim() == 4 and w.dim() == 4 and b is None and x.device == w.device:
        with pytest.raises(kind, match=r"^minidl.conv2d_backward: " + match):
            ops.conv2d_backward(torch.zeros(2, 4, 3, 3), x, w, torch.zeros_like(w), None, s, p)


def test_backward_checks_gradients_before_writing(ops):
    x, w = torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3)
    gw = torch.zeros_like(w)
    with pytest.raises(ValueError, match=r"minidl.conv2d_backward: expected grad_output of shape \[2, 4, 3, 3\], "
                                         r"got \[2, 4, 3, 4\]"):
        ops.conv2d_backward(torch.zeros(2, 4, 3, 4), x, w, gw, None, [1, 1], [0, 0])
    with pytest.raises(ValueError, match=r"minidl.conv2d_backward: expected grad_weight of shape \[4, 3, 3, 3\]"):
        ops.conv2d_backward(torch.zeros(2, 4, 3, 3), x, w, torch.zeros(4, 3, 3, 2), None, [1, 1], [0, 0])
    with pytest.raises(ValueError, match=r"minidl.conv2d_backward: expected grad_bias of shape \[4\], got \[3\]"):
        ops.conv2d_backward(torch.ones(2, 4, 3, 3), x, w, gw, torch.zeros(3), [1, 1], [0, 0])
    assert torch.equal(gw, torch.zeros_like(w))  # the bad calls changed nothing


def test_module_errors_name_the_module(backend_name):
    conv = dl.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"^Conv2d\(3, 4, kernel_size=\(3, 3\), stride=\(1, 1\)\)\.forward: "
                                         r"minidl.conv2d_forward: expected input of shape \[N, 3, H, W\]"):
        conv.forward(torch.randn(2, 2, 5, 5))
    with pytest.raises(TypeError, match=r"Conv2d.*\.forward: minidl.conv2d_forward: expected input of dtype"):
        conv.forward(torch.randn(2, 3, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\.forward: minidl.conv2d_forward: expected input of shape \[2, 3, 2, 2\] "
                                         r"with padding \[0, 0\] to be at least the kernel's 3x3"):
        conv.forward(torch.randn(2, 3, 2, 2))
    conv.forward(torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"Conv2d.*\.backward: minidl.conv2d_backward: expected grad_output of shape"):
        conv.backward(torch.randn(2, 4, 5, 5))
