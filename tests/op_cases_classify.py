"""The op cases of the classification family: cross-entropy, softmax and the pairwise outer product."""
import torch


def classify_cases(device):
    """(op name, args) for every classification op, float32 and float64, odd sizes and a strided view."""
    torch.manual_seed(5)
    cases = []
    for dtype in (torch.float32, torch.float64):
        def rand(*shape):
            return torch.randn(*shape, dtype=dtype, device=device)

        logits = rand(7, 3)
        target = torch.tensor([0, 2, 1, 1, 0, 2, 2], device=device)
        x = rand(4, 2, 5)
        y = rand(4, 2, 5).softmax(-1)
        cases += [
            ("cross_entropy_forward", (logits, target)),
            ("cross_entropy_forward", (rand(3, 7).t(), target)),  # a transposed view
            ("cross_entropy_forward", (rand(1, 1), torch.zeros(1, dtype=torch.int64, device=device))),
            ("softmax_forward", (x, -1)),
            ("softmax_forward", (x, 1)),
            ("softmax_forward", (x.transpose(0, 2), 0)),
            ("softmax_backward", (rand(4, 2, 5), y, -1)),
            ("softmax_backward", (rand(4, 2, 5), y, 0)),
            ("pair_outer_forward", (x,)),
            ("pair_outer_forward", (rand(5, 3, 2).transpose(1, 2),)),
            ("pair_outer_backward", (rand(4, 5, 5), x)),
        ]
    return cases
