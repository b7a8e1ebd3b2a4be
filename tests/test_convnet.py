"""The study's convnets built from minidl modules against their torch.nn twins given the same weights (float64,
both backends): forward, loss, every gradient and the batch-norm running statistics, over training steps."""
import pytest
import torch

import minidl as dl

F64 = dict(dtype=torch.float64)
TOL = dict(rtol=1e-9, atol=1e-11)


def block(c_in, c_out):
    """The study's block: 3x3 convolution, 2x2 max pooling, batch norm, ReLU."""
    return [dl.Conv2d(c_in, c_out, 3, bias=False, **F64), dl.MaxPool2d(2), dl.BatchNorm2d(c_out, **F64), dl.ReLU()]


def trunk(c_in, hidden):
    """14x14 images -> hidden features, as minidl.pairs.models.conv_trunk."""
    return dl.Sequential(*block(c_in, 32), *block(32, 64), dl.Flatten(), dl.Linear(64 * 2 * 2, hidden, **F64),
                         dl.ReLU(), dl.Dropout(0.2))


def twin(module):
    """The torch.nn module of a minidl one, with a copy of its parameters and buffers."""
    if isinstance(module, dl.Sequential):
        return torch.nn.Sequential(*[twin(m) for m in module.modules])
    if isinstance(module, dl.Conv2d):
        t = torch.nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, bias=module.bias is not None,
                            **F64)
    elif isinstance(module, dl.Linear):
        t = torch.nn.Linear(module.in_features, module.out_features, **F64)
    elif isinstance(module, dl.BatchNorm2d):
        t = torch.nn.BatchNorm2d(module.num_features, **F64)
    else:
        return {dl.MaxPool2d: lambda: torch.nn.MaxPool2d(2), dl.ReLU: torch.nn.ReLU, dl.Flatten: torch.nn.Flatten,
                dl.Dropout: lambda: torch.nn.Dropout(module.p)}[type(module)]()
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            t.get_parameter(name).copy_(tensor) if name in dict(t.named_parameters()) else t.get_buffer(name).copy_(tensor)
    return t


def assert_same_state(net, ref):
    """Parameters, gradients and buffers of the minidl network equal the torch one's."""
    ref_params = list(ref.parameters())
    assert len(net.param()) == len(ref_params)
    for (p, g), rp in zip(net.param(), ref_params):
        torch.testing.assert_close(p, rp.detach(), **TOL)
        torch.testing.assert_close(g, rp.grad, **TOL)
    buffers = dict(ref.named_buffers())
    assert len(buffers) > 0 and [n for n, _ in net.named_buffers()] == list(buffers)
    for name, t in net.named_buffers():
        torch.testing.assert_close(t, buffers[name], **TOL)


def pairs(n, seed):
    """n random image pairs (n, 2, 14, 14), their comparison targets and digit classes."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 2, 14, 14, generator=g, **F64), torch.randint(0, 2, (n,), generator=g),
            torch.randint(0, 10, (n, 2), generator=g))


@pytest.mark.parametrize("channels_last", [False, True])
def test_convnet_aux_trains_like_its_torch_twin(backend_name, channels_last):
    torch.manual_seed(0)
    body, compare, digits = trunk(2, 200), dl.Linear(200, 2, **F64), dl.Linear(200, 20, **F64)
    ref_body, ref_compare, ref_digits = twin(body), twin(compare), twin(digits)
    ref = torch.nn.ModuleList([ref_body, ref_compare, ref_digits])
    params = body.param() + compare.param() + digits.param()
    opt = dl.Adam(params, lr=1e-2)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    ce, ce_digits = dl.CrossEntropyLoss(), dl.CrossEntropyLoss()
    for step in range(3):
        x, c, d = pairs(6, step)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        torch.manual_seed(100 + step)  # the same dropout mask on both sides
        h = body.forward(x)
        loss = ce.forward(compare.forward(h), c) + ce_digits.forward(digits.forward(h).reshape(-1, 10), d.reshape(-1))
        torch.manual_seed(100 + step)
        with torch.enable_grad():
            rh = ref_body(x)
            ref_loss = (torch.nn.functional.cross_entropy(ref_compare(rh), c)
                        + torch.nn.functional.cross_entropy(ref_digits(rh).reshape(-1, 10), d.reshape(-1)))
            ref_opt.zero_grad()
            ref_loss.backward()
        torch.testing.assert_close(loss, ref_loss.detach(), **TOL)
        opt.zero_grad()
        grad_h = compare.backward(ce.backward()) + digits.backward(ce_digits.backward().reshape(-1, 20))
        body.backward(grad_h, input_grad=False)
        assert_same_state(body, ref_body)
        opt.step()
        ref_opt.step()
    body.eval()
    ref_body.eval()
    x = pairs(5, 9)[0]
    with torch.no_grad():
        torch.testing.assert_close(body.forward(x), ref_body(x), **TOL)


def test_siamese_aux_shares_its_branch_through_per_call_contexts(backend_name):
    """One branch applied to each digit in its own call (each with its own batch statistics and dropout mask),
    then softmax and the outer product of the two digits' probabilities; against torch applying its branch twice."""
    torch.manual_seed(1)
    branch = dl.Sequential(*trunk(1, 180).modules, dl.Linear(180, 10, **F64))
    head, soft, outer = dl.Linear(100, 2, **F64), dl.Softmax(-1), dl.PairOuter()
    ref_branch, ref_head = twin(branch), twin(head)
    x, c, _ = pairs(4, 5)
    outs, ctxs = [], []
    for i in range(2):
        torch.manual_seed(200 + i)
        out, ctx = branch.call(x[:, i:i + 1])
        outs.append(out)
        ctxs.append(ctx)
    digit_logits = torch.stack(outs, 1)
    logits = head.forward(outer.forward(soft.forward(digit_logits)))
    ce = dl.CrossEntropyLoss()
    loss = ce.forward(logits, c)
    with torch.enable_grad():
        ref_outs = []
        for i in range(2):
            torch.manual_seed(200 + i)
            ref_outs.append(ref_branch(x[:, i:i + 1]))
        p = torch.stack(ref_outs, 1).softmax(2)
        ref_logits = ref_head((p[:, 0, :, None] * p[:, 1, None, :]).reshape(-1, 100))
        ref_loss = torch.nn.functional.cross_entropy(ref_logits, c)
        ref_loss.backward()
    torch.testing.assert_close(logits, ref_logits.detach(), **TOL)
    torch.testing.assert_close(loss, ref_loss.detach(), **TOL)
    grad_digits = soft.backward(outer.backward(head.backward(ce.backward())))
    for i in (1, 0):  # the backwards in the other order than the forwards
        branch.backward_ctx(ctxs[i], grad_digits[:, i].contiguous())
    assert_same_state(branch, ref_branch)
    for (_, g), rp in zip(head.param(), ref_head.parameters()):
        torch.testing.assert_close(g, rp.grad, **TOL)
