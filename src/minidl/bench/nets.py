"""The networks timed: a minidl Sequential of Linear and ReLU, and its torch.nn twin."""
import torch

import minidl

# The fused mlp_forward op's activation codes (0: none), as its schema documents them.
ACTIVATION_CODES = {minidl.ReLU: 1, minidl.Tanh: 2}


def build_minidl_net(sizes, device, seed):
    """Linear layers of the given widths, ReLU between them, the last one plain; seeded initialisation."""
    torch.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods.append(minidl.Linear(a, b, device=device))
        if i < len(sizes) - 2:
            mods.append(minidl.ReLU())
    return minidl.Sequential(*mods)


def layers(net):
    """The modules of a Sequential, in order."""
    return [net[i] for i in range(len(net))]


def mlp_arguments(net):
    """(weights, biases, activation codes): a Sequential of Linear layers, each optionally followed by
    a ReLU or Tanh, as the fused mlp_forward op takes it."""
    weights, biases, codes = [], [], []
    for m in layers(net):
        if isinstance(m, minidl.Linear):
            weights.append(m.weight)
            biases.append(m.bias)
            codes.append(0)
        else:
            codes[-1] = ACTIVATION_CODES[type(m)]
    return weights, biases, codes


def torch_copy(net):
    """The torch.nn twin of a minidl Sequential of Linear and ReLU, with the same weights."""
    mods = []
    for m in layers(net):
        if isinstance(m, minidl.Linear):
            lin = torch.nn.Linear(m.in_features, m.out_features, device=m.weight.device)
            with torch.no_grad():
                lin.weight.copy_(m.weight)
                lin.bias.copy_(m.bias)
            mods.append(lin)
        else:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)
