"""The five compared models built from minidl modules: the architectures, parameter counts and parameter
order of models.py, trained without autograd. forward(x) -> (comparison logits N x 2, digit logits N x 2 x 10
or None); backward(grad_logits, grad_digits=None) accumulates every parameter gradient."""

import minidl as dl
from minidl.nn.module import Module


def conv_block(c_in, c_out):
    """3x3 convolution, 2x2 max pooling, batch norm, ReLU, as models.conv_block."""
    return [dl.Conv2d(c_in, c_out, 3, bias=False), dl.MaxPool2d(2), dl.BatchNorm2d(c_out), dl.ReLU()]


def conv_trunk(c_in, hidden, dropout):
    """14x14 images, c_in channels -> hidden features, as models.conv_trunk."""
    return dl.Sequential(*conv_block(c_in, 32), *conv_block(32, 64), dl.Flatten(),
                         dl.Linear(64 * 2 * 2, hidden), dl.ReLU(), dl.Dropout(dropout))


class PairsModel(Module):
    """The protocol of the five models; the network's own input gradient is never needed."""

    def backward(self, grad_logits, grad_digits=None):
        """The backward of the latest forward; returns None (the input is data)."""
        return self.backward_ctx(self.take_ctx(), grad_logits, grad_digits)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(name for name, _ in self.named_children())})"


class MLP(PairsModel):
    """Fully connected network on the flattened pair (392 pixels)."""

    def __init__(self, hidden=130, dropout=0.2):
        self.net = dl.Sequential(
            dl.Flatten(), dl.Linear(2 * 14 * 14, hidden), dl.ReLU(), dl.Dropout(dropout),
            dl.Linear(hidden, hidden), dl.ReLU(), dl.Dropout(dropout), dl.Linear(hidden, 2))

    def forward_ctx(self, ctx, x):
        ctx.net = dl.nn.module.Context()
        return self.net.forward_ctx(ctx.net, x), None

    def backward_ctx(self, ctx, grad_logits, grad_digits=None):
        self.net.backward_ctx(ctx.net, grad_logits, False)

    def named_children(self):
        return [("net", self.net)]


class ConvNet(PairsModel):
    """ConvNet on the pair as a 2-channel image (no weight sharing); aux adds 2x10 digit logits."""

    def __init__(self, aux=False, hidden=200, dropout=0.2):
        self.trunk = conv_trunk(2, hidden, dropout)
        self.compare = dl.Linear(hidden, 2)
        self.digits = dl.Linear(hidden, 20) if aux else None

    def forward_ctx(self, ctx, x):
        h, ctx.trunk = self.trunk.call(x)
        logits, ctx.compare = self.compare.call(h)
        if self.digits is None:
            return logits, None
        digits, ctx.digits = self.digits.call(h)
        return logits, digits.view(-1, 2, 10)

    def backward_ctx(self, ctx, grad_logits, grad_digits=None):
        grad_h = self.compare.backward_ctx(ctx.compare, grad_logits)
        if self.digits is not None:
            grad_h += self.digits.backward_ctx(ctx.digits, grad_digits.reshape(-1, 20))
        self.trunk.backward_ctx(ctx.trunk, grad_h, False)

    def named_children(self):
        return [("trunk", self.trunk), ("compare", self.compare)] + (
            [] if self.digits is None else [("digits", self.digits)])


class Siamese(PairsModel):
    """One digit branch applied to both images as one batch (weight sharing), then a comparison head."""

    def __init__(self, aux=False, hidden=180, dropout=0.2):
        self.aux = aux
        self.branch = dl.Sequential(conv_trunk(1, hidden, dropout), dl.Linear(hidden, 10))
        if aux:  # the branch outputs are digit logits; P(a <= b) is linear in the joint p(a) p(b)^T
            self.joint = dl.Sequential(dl.Softmax(-1), dl.PairOuter())
            self.head = dl.Linear(10 * 10, 2)
        else:  # 10 free features per digit, compared by a small MLP
            self.head = dl.Sequential(dl.Linear(20, 64), dl.ReLU(), dl.Linear(64, 2))

    def forward_ctx(self, ctx, x):
        n = x.shape[0]
        out, ctx.branch = self.branch.call(x.reshape(2 * n, 1, 14, 14))
        out = out.view(n, 2, 10)
        if not self.aux:
            logits, ctx.head = self.head.call(out.reshape(n, 20))
            return logits, None
        joint, ctx.joint = self.joint.call(out)
        logits, ctx.head = self.head.call(joint)
        return logits, out

    def backward_ctx(self, ctx, grad_logits, grad_digits=None):
        grad = self.head.backward_ctx(ctx.head, grad_logits)
        if self.aux:
            grad = self.joint.backward_ctx(ctx.joint, grad)
            if grad_digits is not None:
                grad += grad_digits
        self.branch.backward_ctx(ctx.branch, grad.reshape(-1, 10), False)

    def named_children(self):
        return [("branch", self.branch), ("head", self.head)]


MODELS = {
    "mlp": MLP,
    "convnet": ConvNet,
    "siamese": Siamese,
    "convnet_aux": lambda: ConvNet(aux=True),
    "siamese_aux": lambda: Siamese(aux=True),
}


def copy_from_torch(model, reference):
    """Copy a torch.nn twin's parameters and buffers into the minidl MODEL, matched in order and shape."""
    pairs = [(p, r) for (p, _), r in zip(model.param(), reference.parameters())]
    pairs += [(t, r) for (_, t), r in zip(model.named_buffers(), reference.buffers())]
    counts = (len(model.param()), len(list(reference.parameters())),
              len(model.named_buffers()), len(list(reference.buffers())))
    if counts[0] != counts[1] or counts[2] != counts[3]:
        raise ValueError(f"copy_from_torch: {counts[0]} parameters and {counts[2]} buffers in {model!r}, "
                         f"{counts[1]} and {counts[3]} in the torch model")
    for i, (mine, theirs) in enumerate(pairs):
        if mine.shape != theirs.shape:
            raise ValueError(f"copy_from_torch: tensor {i} has shape {list(mine.shape)} in {model!r}, "
                             f"{list(theirs.shape)} in the torch model")
        mine.copy_(theirs.detach())
    return model
