"""The kernel interface: `cpp` (torch.ops.minidl, C++/CUDA) and `python` (torch.empty only) implement the
ops of one table (csrc/ops.h, minidl._C._ops); `fake` gives their shapes."""

# The activation kinds of the fused ops: an op takes a kind's index here (csrc/activation.h's enum).
ACTIVATIONS = ("none", "relu", "tanh")
