"""The five compared models in torch.nn (dl_models.py has their minidl twins); each returns (comparison logits N x 2, digit logits N x 2 x 10 or None)."""

import torch
from torch import nn


def count_parameters(model):
    """Number of trainable parameters (of a torch.nn or a minidl model)."""
    if hasattr(model, "param"):  # a minidl Module: each shared tensor once
        return sum(p.numel() for p, _ in model.param())
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class ChannelsLast(nn.Module):
    """Store activations as N x H x W x C: max pooling on CPU is several times faster that way."""

    def forward(self, x):
        return x.contiguous(memory_format=torch.channels_last)


def conv_block(c_in, c_out):
    """3x3 convolution, 2x2 max pooling, batch norm, ReLU (normalising after pooling: 4x less work)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, bias=False), ChannelsLast(), nn.MaxPool2d(2),
        nn.BatchNorm2d(c_out), nn.ReLU(),
    )


def conv_trunk(c_in, hidden, dropout):
    """14x14 images, c_in channels -> hidden features (12x12, 6x6, 4x4, then 2x2 x 64 -> hidden)."""
    return nn.Sequential(
        conv_block(c_in, 32), conv_block(32, 64), nn.Flatten(),
        nn.Linear(64 * 2 * 2, hidden), nn.ReLU(), nn.Dropout(dropout),
    )


class MLP(nn.Module):
    """Fully connected network on the flattened pair (392 pixels)."""

    def __init__(self, hidden=130, dropout=0.2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * 14 * 14, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 2),
        )

    def forward(self, x):
        return self.net(x), None


class ConvNet(nn.Module):
    """ConvNet on the pair as a 2-channel image (no weight sharing); aux adds 2x10 digit logits."""

    def __init__(self, aux=False, hidden=200, dropout=0.2):
        super().__init__()
        self.trunk = conv_trunk(2, hidden, dropout)
        self.compare = nn.Linear(hidden, 2)
        self.digits = nn.Linear(hidden, 20) if aux else None

    def forward(self, x):
        h = self.trunk(x)
        digits = None if self.digits is None else self.digits(h).view(-1, 2, 10)
        return self.compare(h), digits


class Siamese(nn.Module):
    """One digit branch applied to both images (weight sharing), then a comparison head."""

    def __init__(self, aux=False, hidden=180, dropout=0.2):
        super().__init__()
        self.aux = aux
        self.branch = nn.Sequential(conv_trunk(1, hidden, dropout), nn.Linear(hidden, 10))
        if aux:
            # the branch outputs are digit logits; P(a <= b) is linear in the joint p(a) p(b)^T
            self.head = nn.Linear(10 * 10, 2)
        else:  # 10 free features per digit, compared by a small MLP
            self.head = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, x):
        n = x.shape[0]
        out = self.branch(x.reshape(2 * n, 1, 14, 14)).view(n, 2, 10)
        if not self.aux:
            return self.head(out.reshape(n, 20)), None
        p = out.softmax(dim=2)
        joint = p[:, 0, :, None] * p[:, 1, None, :]
        return self.head(joint.reshape(n, 100)), out


MODELS = {
    "mlp": MLP,
    "convnet": ConvNet,
    "siamese": Siamese,
    "convnet_aux": lambda: ConvNet(aux=True),
    "siamese_aux": lambda: Siamese(aux=True),
}


def build_model(name, framework="minidl"):
    """Instantiate a model of the registry by name, from minidl modules (dl_models) or torch.nn."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    if framework == "minidl":
        from . import dl_models  # minidl's own twin of each model
        return dl_models.MODELS[name]()
    if framework != "torch":
        raise ValueError(f"unknown framework {framework!r}; valid: minidl, torch")
    return MODELS[name]()
