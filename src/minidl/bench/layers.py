"""The layers section: forward + backward of the convnet study's layers at its shapes, and its Adam step:
minidl cpp and python against torch.nn with autograd, in the torch layout (NCHW or channels-last) that is faster."""
import inspect
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

import minidl

from .measure import Variant, add_speedups, backend_names, measure, record
from .report import progress

CL = torch.channels_last
CHECK_RTOL = CHECK_ATOL = 1e-4  # the sanity check before timing each row


@dataclass
class Case:
    """One row: make_minidl() and make_torch(layout) each return a fresh step (forward + backward, or the
    optimiser step) that returns the tensors to compare; minidl's step runs under whichever backend is selected."""

    name: str
    make_minidl: Callable
    make_torch: Callable
    torch_layouts: tuple  # ("nchw", "cl") for 4-d activations, else (None,) or the Adam variants
    minidl_layout: Optional[str] = None
    check: Optional[Callable] = None  # check(minidl_out, torch_out): raises if they disagree; default allclose


def in_layout(t, layout):
    """A copy of t in NCHW or channels-last strides (also for 1-channel tensors, which .contiguous(memory_format=...)
    leaves as they are, so that torch and minidl would still see them as NCHW)."""
    fmt = CL if layout == "cl" and t.dim() == 4 else torch.contiguous_format
    return torch.empty_like(t, memory_format=fmt).copy_(t.detach())  # a copy: each variant owns its tensors


def torch_name(layout):
    return "torch" if layout is None else f"torch {layout}"


def module_case(name, make_module, torch_fn, x, gy, params, layout, input_grad=True):
    """A minidl module against a torch function of (input, *params) with autograd; params are the
    module's parameter values (copied into it), in the order of its param()."""
    def make_minidl():
        m = make_module()
        for (p, _), value in zip(m.param(), params):
            p.copy_(value)
        xl, gyl = in_layout(x, layout), in_layout(gy, layout)
        kwargs = {} if input_grad or "input_grad" not in inspect.signature(m.backward).parameters \
            else {"input_grad": False}

        def step():
            y = m.forward(xl)
            gx = m.backward(gyl, **kwargs)
            return [y, gx if input_grad else None] + [g for _, g in m.param()]
        return step

    def make_torch(torch_layout):
        xt = in_layout(x, torch_layout).requires_grad_(input_grad)
        gyt = in_layout(gy, torch_layout)
        ps = [in_layout(p, torch_layout).requires_grad_() for p in params]

        def step():
            xt.grad = None
            for p in ps:
                p.grad = None
            y = torch_fn(xt, *ps)
            y.backward(gyt)
            return [y, xt.grad if input_grad else None] + [p.grad for p in ps]
        return step
    layouts = ("nchw", "cl") if x.dim() == 4 else (None,)
    return Case(name, make_minidl, make_torch, layouts, layout if x.dim() == 4 else None)


def dropout_check(p):
    """Dropout draws its own mask: each side must zero about p of the elements and scale the rest by 1 / (1 - p)."""
    def check(a, b):
        for y, gx in (a[:2], b[:2]):
            kept = (y != 0).to(y.dtype)
            frac = 1 - kept.mean().item()
            if abs(frac - p) > 0.1 or not torch.allclose(gx * kept, gx):
                raise AssertionError(f"dropout: zeroed fraction {frac:.3f} for p={p}, or a gradient through a zero")
    return check


def dropout_case(p, shape, device):
    x = torch.rand(shape, device=device) + 0.5  # no zeros of its own
    gy = torch.rand(shape, device=device) + 0.5
    case = module_case(f"dropout p={p} {shape[0]}x{shape[1]}", lambda: minidl.Dropout(p),
                       lambda xt: F.dropout(xt, p, training=True), x, gy, [], None)
    check = dropout_check(p)

    def full_check(a, b):  # also y = x * mask and gx = gy * mask, mask = y / x
        check(a, b)
        for y, gx in (a[:2], b[:2]):
            torch.testing.assert_close(gx, gy * (y / x), rtol=CHECK_RTOL, atol=CHECK_ATOL)
    case.check = full_check
    return case


def cross_entropy_case(batch, device):
    x, target = torch.randn(batch, 2, device=device), torch.randint(0, 2, (batch,), device=device)

    def make_minidl():
        crit = minidl.CrossEntropyLoss()

        def step():
            return [crit.forward(x, target), crit.backward()]
        return step

    def make_torch(_):
        xt = x.clone().requires_grad_()

        def step():
            xt.grad = None
            loss = F.cross_entropy(xt, target)
            loss.backward()
            return [loss, xt.grad]
        return step
    return Case(f"cross-entropy {batch}x2", make_minidl, make_torch, (None,))


def softmax_pair_case(batch, k, device):
    x, gy = torch.randn(batch, 2, k, device=device), torch.randn(batch, k * k, device=device)

    def make_minidl():
        soft, outer = minidl.Softmax(dim=2), minidl.PairOuter()

        def step():
            y = outer.forward(soft.forward(x))
            return [y, soft.backward(outer.backward(gy))]
        return step

    def make_torch(_):
        xt = x.clone().requires_grad_()

        def step():
            xt.grad = None
            p = torch.softmax(xt, dim=2)
            y = (p[:, 0, :, None] * p[:, 1, None, :]).reshape(batch, k * k)
            y.backward(gy)
            return [y, xt.grad]
        return step
    return Case(f"softmax + PairOuter {batch}x2x{k}", make_minidl, make_torch, (None,))


def adam_case(device, smoke):
    """One Adam step over a parameter set shaped as the study's convnet (its 10 tensors)."""
    from minidl.pairs.models import ConvNet
    shapes = [p.shape for p in ConvNet().parameters()]
    if smoke:
        shapes = shapes[:3]
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen).to(device) for s in shapes]
    grads = [torch.randn(s, generator=gen).to(device) for s in shapes]
    lr = 1e-3

    def make_minidl():
        ps = [p.clone() for p in params]
        opt = minidl.Adam(list(zip(ps, [g.clone() for g in grads])), lr=lr)

        def step():
            opt.step()
            return ps
        return step

    def make_torch(variant):
        ps = [p.clone().requires_grad_() for p in params]
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        opt = torch.optim.Adam(ps, lr=lr, **{variant: True})

        def step():
            opt.step()
            return ps
        return step
    n = sum(p.numel() for p in params)
    return Case(f"Adam step {n} params in {len(params)} tensors", make_minidl, make_torch, ("foreach", "fused"))


def layer_cases(batch, device, smoke):
    """The study's layers at its shapes (the convnet: 2x14x14 -> conv 32 -> 12x12 -> pool -> 6x6 -> conv 64
    -> 4x4 -> pool -> 2x2; the siamese branch: the same on 1x14x14 at twice the batch)."""
    def randn(*shape):
        return torch.randn(*shape, device=device)

    def conv(c_in, c_out, hw, n, input_grad):
        w = randn(c_out, c_in, 3, 3) / (9 * c_in) ** 0.5
        tag = "" if input_grad else ", no input grad"
        return module_case(f"conv {c_in}->{c_out} 3x3 {n}x{c_in}x{hw}x{hw}{tag}",
                           lambda: minidl.Conv2d(c_in, c_out, 3, bias=False, device=device), F.conv2d,
                           randn(n, c_in, hw, hw), randn(n, c_out, hw - 2, hw - 2), [w], "cl", input_grad)

    def pool(c, hw):
        return module_case(f"max-pool 2x2 {batch}x{c}x{hw}x{hw}", lambda: minidl.MaxPool2d(2),
                           lambda xt: F.max_pool2d(xt, 2), randn(batch, c, hw, hw),
                           randn(batch, c, hw // 2, hw // 2), [], "cl")

    def bn(c, hw):
        return module_case(f"batch norm (train) {batch}x{c}x{hw}x{hw}", lambda: minidl.BatchNorm2d(c, device=device),
                           lambda xt, w, b: F.batch_norm(xt, None, None, w, b, training=True),
                           randn(batch, c, hw, hw), randn(batch, c, hw, hw), [randn(c) + 1, randn(c)], "cl")
    return [conv(2, 32, 14, batch, False), conv(1, 32, 14, 2 * batch, False), conv(32, 64, 6, batch, True),
            pool(32, 12), pool(64, 4), bn(32, 6), bn(64, 2), dropout_case(0.2, (batch, 200), device),
            cross_entropy_case(batch, device), softmax_pair_case(batch, 10, device), adam_case(device, smoke)]


def allclose_check(name):
    def check(a, b):
        for i, (u, v) in enumerate(zip(a, b)):
            if u is None or v is None:
                continue
            u, v = u.detach(), v.detach()
            # Relative to the result's largest magnitude: a gradient summed over a batch of 100 picks up
            # rounding of that size from the order of the sum, which differs between the two.
            scale = max(v.abs().max().item(), 1.0) if v.numel() else 1.0
            err = (u - v).abs().max().item() / scale if u.shape == v.shape and u.numel() else 0.0
            if u.shape != v.shape or not err <= CHECK_RTOL:
                why = f"shapes {list(u.shape)} {list(v.shape)}" if u.shape != v.shape else f"max error {err:.2g}"
                raise AssertionError(f"layers: {name}: minidl and torch disagree on result {i} ({why}, "
                                     f"relative to its largest magnitude)")
    return check


def variants_of(case):
    """([Variant], {variant: layout}, {variant: why it does not run}) after checking each against torch once."""
    check = case.check or allclose_check(case.name)
    variants, layouts, skipped, torch_out = [], {}, {}, None
    for layout in case.torch_layouts:
        name = torch_name(layout)
        try:
            with torch.enable_grad():
                out = case.make_torch(layout)()
        except (RuntimeError, TypeError, ValueError) as e:  # e.g. a fused Adam this torch lacks here
            skipped[name] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
            continue
        torch_out = torch_out or out
        variants.append(Variant(name, case.make_torch(layout), grad=True))
        layouts[name] = layout if layout in ("nchw", "cl") else "-"
    if torch_out is None:
        raise RuntimeError(f"layers: {case.name}: no torch variant runs: {skipped}")
    previous = minidl.get_backend()
    try:
        for name in backend_names():
            minidl.set_backend(name)
            try:
                with torch.no_grad():
                    out = case.make_minidl()()
            except (RuntimeError, TypeError, ValueError, NotImplementedError) as e:
                device = torch_out[0].device.type
                skipped[name] = f"not on {device}: {type(e).__name__}: {str(e).splitlines()[0]}"
                continue
            check(out, torch_out)
            variants.append(Variant(name, case.make_minidl(), backend=name))
            layouts[name] = case.minidl_layout or "-"
    finally:
        minidl.set_backend(previous)
    return variants, layouts, skipped


def run_layers(cfg, threads, device, sync):
    """Each layer forward + backward (and the Adam step): minidl cpp vs python vs the fastest torch variant."""
    smoke = cfg.get("layers_batch", 100) < 100
    out = []
    torch.manual_seed(0)
    for case in layer_cases(cfg.get("layers_batch", 100), device, smoke):
        progress(f"{case.name}, {threads} thread(s)")
        variants, layouts, skipped = variants_of(case)
        stats = measure(variants, cfg["repeats"], cfg["target"], sync)
        best = min((n for n in stats if n.startswith("torch")), key=lambda n: stats[n]["median_s"])
        add_speedups(stats, reference=best)
        for name, s in stats.items():
            s["layout"] = layouts[name]
        out += record("layers", case.name, threads, device, stats, reference=best)
        out += [dict(section="layers", case=case.name, threads=threads, device=device, variant=name,
                     reference=best, skipped=why) for name, why in skipped.items()]
    return out
