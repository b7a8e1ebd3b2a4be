"""A training step's matrix products: their flop count, and the products alone as a variant."""
import torch


def step_flops(sizes, batch):
    """Matmul flops of one training step: forward, weight gradients, and input gradients but the first layer's."""
    macs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * batch * (2 * sum(macs) + sum(macs[1:]))


def matmuls_fn(sizes, batch, device):
    """Only the matrix products of a training step, each through torch.mm or addmm_ in the shapes and
    layouts of minidl's step: y = x @ W.T forward, gW += g.T @ x and gx = g @ W backward (the first
    layer's gx left out), into preallocated tensors. What BLAS alone allows the step on this machine."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    xs = [torch.rand(batch, n_in, device=device) for n_in, _ in pairs]
    ws = [torch.randn(n_out, n_in, device=device) for n_in, n_out in pairs]
    gws = [torch.zeros_like(w) for w in ws]
    ys = [torch.empty(batch, n_out, device=device) for _, n_out in pairs]
    gs = [torch.randn(batch, n_out, device=device) for _, n_out in pairs]
    gxs = [None] + [torch.empty_like(x) for x in xs[1:]]  # the first layer's gx is left out

    def run():
        for x, w, y in zip(xs, ws, ys):
            torch.mm(x, w.t(), out=y)
        for k in reversed(range(len(pairs))):
            gws[k].addmm_(gs[k].t(), xs[k])
            if k > 0:
                torch.mm(gs[k], ws[k], out=gxs[k])
    return run
