"""The kernel interface: `cpp` (torch.ops.minidl, C++/CUDA) and `python` (torch.empty only) implement the same functions."""
ACTIVATIONS = ("none", "relu", "tanh")
