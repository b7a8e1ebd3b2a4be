"""Dropout against torch.nn.functional.dropout: the same mask for the same generator state, scaling,
evaluation identity, a mask per call, and the ops through opcheck with a generator."""
import pytest
import torch

import minidl as dl
from conftest import require_cpp


def _layout(t, channels_last):
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("shape,channels_last", [((100, 200), False), ((7, 3, 5, 5), False), ((7, 3, 5, 5), True),
                                                 ((1, 1), False), ((3, 1001), False)])
def test_dropout_equals_torch_for_the_same_seed(backend_name, dtype, p, shape, channels_last):
    """On the CPU the mask is torch's own: torch.nn.functional.dropout draws bernoulli_(1 - p) on
    empty_like(input), and so do both backends."""
    x = _layout(torch.randn(*shape, dtype=dtype), channels_last)
    drop = dl.Dropout(p)
    torch.manual_seed(8)
    y = drop.forward(x)
    torch.manual_seed(8)
    xr = x.clone().requires_grad_()
    with torch.enable_grad():
        y_ref = torch.nn.functional.dropout(xr, p, training=True)
        g = torch.randn_like(y_ref)
        y_ref.backward(g)
    assert torch.equal(y, y_ref) and y.stride() == y_ref.stride()
    assert torch.equal(drop.backward(g), xr.grad)
    kept, scale = y.ne(0), torch.ones((), dtype=dtype) / (1 - p)  # the kept elements' mask value
    torch.testing.assert_close(y[kept], x[kept] * scale, rtol=0, atol=0)


def test_a_generator_gives_the_same_mask_on_both_backends(device):
    require_cpp()
    from minidl.kernels import cpp, python

    x = torch.randn(50, 40, device=device)
    outs = []
    for kernels in (cpp, python, cpp):
        generator = torch.Generator(device=device).manual_seed(21)
        outs.append(kernels.dropout_forward(x, 0.3, generator))
    for out in outs[1:]:
        assert torch.equal(out[0], outs[0][0]) and torch.equal(out[1], outs[0][1])
    mask = outs[0][1]
    assert set(mask.unique().tolist()) <= {0.0, float(torch.tensor(1.0) / torch.tensor(0.7))}
    assert 0.6 < float(mask.ne(0).float().mean()) < 0.8


def test_module_generator_and_default_generator(backend_name):
    x = torch.randn(30, 30)
    drop = dl.Dropout(0.5)
    drop.generator = torch.Generator().manual_seed(3)
    a = drop.forward(x)
    drop.generator = torch.Generator().manual_seed(3)
    assert torch.equal(drop.forward(x), a)
    assert not torch.equal(drop.forward(x), a)  # the generator moved on
    drop.generator = None
    torch.manual_seed(4)
    b = drop.forward(x)
    torch.manual_seed(4)
    assert torch.equal(drop.forward(x), b)


def test_eval_and_p_zero_are_the_identity(backend_name):
    x = torch.randn(4, 5)
    drop = dl.Dropout(0.5).eval()
    assert drop.forward(x) is x and drop.backward(x) is x
    zero = dl.Dropout(0.0)
    assert zero.forward(x) is x
    state = torch.get_rng_state()
    dl.Dropout(1.0).forward(x)
    assert torch.equal(torch.get_rng_state(), state)  # p = 1 draws nothing, as torch
    assert torch.equal(dl.Dropout(1.0).forward(x), torch.nn.functional.dropout(x, 1.0))


def test_a_dropout_used_twice_pairs_each_backward_with_its_own_mask(backend_name):
    torch.manual_seed(5)
    drop = dl.Dropout(0.5)
    net = dl.Sequential(drop, dl.Linear(6, 6), drop)
    x = torch.randn(8, 6)
    torch.manual_seed(6)
    net.forward(x)
    torch.manual_seed(6)  # the masks again, drawn in the same order
    mask_1 = torch.nn.functional.dropout(torch.ones(8, 6), 0.5)
    mask_2 = torch.nn.functional.dropout(torch.ones(8, 6), 0.5)
    assert not torch.equal(mask_1, mask_2)
    g = torch.randn(8, 6)
    gx = net.backward(g)
    expected = ((g * mask_2) @ net[1].weight) * mask_1
    torch.testing.assert_close(gx, expected, rtol=1e-6, atol=1e-6)


def test_dropout_ops_pass_opcheck_with_a_generator():
    """The random case (not among the shared op cases, which need repeatable calls): opcheck's schema, autograd
    registration and fake-tensor checks, and the direct call equal to torch.ops for the same generator state."""
    require_cpp()
    import minidl._C

    x = torch.randn(6, 4, 3, 3).contiguous(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(9)
    torch.library.opcheck(torch.ops.minidl.dropout_forward.default, (x, 0.4, generator),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    outs = []
    for call in (torch.ops.minidl.dropout_forward.default, minidl._C.direct.dropout_forward):
        generator.manual_seed(10)
        outs.append(call(x, 0.4, generator))
        generator.manual_seed(10)
        outs.append(call(x, 0.4, generator=generator))
    torch.manual_seed(10)
    outs.append(minidl._C.direct.dropout_forward(x, 0.4))
    for out in outs[1:]:
        assert torch.equal(out[0], outs[0][0]) and torch.equal(out[1], outs[0][1])


def test_dropout_errors_name_the_op_and_module(ops):
    for p in (-0.1, 1.5, "0.5", True):
        with pytest.raises(ValueError, match=r"Dropout: expected p"):
            dl.Dropout(p)
    with pytest.raises(ValueError, match=r"minidl\.dropout_forward: expected p between 0 and 1, got 1\.5"):
        ops.dropout_forward(torch.randn(3), 1.5, None)
    with pytest.raises(TypeError, match=r"Dropout\(p=0\.5\)\.forward: minidl\.dropout_forward: expected input to be "
                                        r"float32 or float64"):
        dl.Dropout().forward(torch.ones(3, dtype=torch.int64))
    drop = dl.Dropout()
    drop.forward(torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"Dropout\(p=0\.5\)\.backward: minidl\.dropout_backward: expected grad_output "
                                         r"of shape \[3, 4\], got \[4, 3\]"):
        drop.backward(torch.randn(4, 3))
    if torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"minidl\.dropout_forward: expected a generator on cpu"):
            ops.dropout_forward(torch.randn(3), 0.5, torch.Generator(device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_dropout_on_cuda_scales_and_reproduces(backend_name):
    x = torch.randn(64, 33, device="cuda", dtype=torch.float64)
    drop = dl.Dropout(0.25)
    drop.generator = torch.Generator(device="cuda").manual_seed(1)
    y = drop.forward(x)
    kept, scale = y.ne(0), torch.ones((), dtype=x.dtype, device="cuda") / 0.75
    torch.testing.assert_close(y[kept], x[kept] * scale, rtol=0, atol=0)
    g = torch.randn_like(x)
    torch.testing.assert_close(drop.backward(g), g * (kept * scale), rtol=0, atol=0)
    drop.generator = torch.Generator(device="cuda").manual_seed(1)
    assert torch.equal(drop.forward(x), y)
