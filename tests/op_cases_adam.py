"""The op cases of minidl.adam_step_ (opcheck, direct calls against torch.ops)."""
import torch


def adam_cases(device):
    """(op name, args): adam_step_ in float32 and float64, with and without weight decay and zero_grads."""
    torch.manual_seed(4)
    cases = []
    for dtype in (torch.float32, torch.float64):
        w, b = torch.randn(4, 3, dtype=dtype, device=device), torch.randn(4, dtype=dtype, device=device)
        gw, gb = torch.randn_like(w), torch.randn_like(b)

        def state():
            return [torch.randn_like(w), torch.randn_like(b)], [torch.rand_like(w), torch.rand_like(b)]

        cases += [
            ("adam_step_", ([w.clone(), b.clone()], [gw, gb], *state(), 1, 1e-3, 0.9, 0.999, 1e-8, 0.0)),
            ("adam_step_", ([w.clone(), b.clone()], [gw, gb], *state(), 7, 0.1, 0.5, 0.9, 1e-6, 0.01)),
            ("adam_step_", ([w.clone(), b.clone()], [gw.clone(), gb.clone()], *state(), 3, 0.01, 0.9, 0.999, 1e-8,
                            0.0, True)),
        ]
    return cases
