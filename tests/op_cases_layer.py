"""Op cases of the layer family (max-pool, batch norm, dropout), for opcheck and the direct-call tests."""
import torch


def _channels_last(t):
    return t.contiguous(memory_format=torch.channels_last)


def layer_cases(device):
    """(op name, args): float32 and float64, NCHW and channels-last, training and evaluation."""
    torch.manual_seed(7)
    cases = []
    for dtype in (torch.float32, torch.float64):
        def randn(*shape):
            return torch.randn(*shape, dtype=dtype, device=device)

        x = randn(2, 3, 7, 6)
        for layout in (lambda t: t, _channels_last):
            xl = layout(x)
            for kernel, stride in (([2, 2], [2, 2]), ([3, 2], [1, 2])):
                oh, ow = (7 - kernel[0]) // stride[0] + 1, (6 - kernel[1]) // stride[1] + 1
                indices = torch.randint(0, 42, (2, 3, oh, ow), device=device)
                cases += [("maxpool2d_forward", (xl, kernel, stride)),
                          ("maxpool2d_backward", (layout(randn(2, 3, oh, ow)), xl, layout(indices), kernel, stride))]
        w, b = randn(3), randn(3)
        for input in (randn(5, 3), randn(4, 3, 5), x, _channels_last(x)):
            for training in (True, False):
                cases.append(("batch_norm_forward", (input, w, b, randn(3), randn(3).abs_(), training, 0.1, 1e-5)))
                cases.append(("batch_norm_backward", (randn(*input.shape), input, w, randn(3), randn(3).abs_(),
                                                      torch.zeros_like(w), torch.zeros_like(b), training)))
        # p = 0 and 1 draw nothing: every call gives the same result, as opcheck and the direct-call tests
        # need; the random draws are checked in tests/test_dropout.py.
        generator = None if device == "meta" else torch.Generator(device=device).manual_seed(11)
        for input in (randn(4, 5), _channels_last(x)):
            cases += [("dropout_forward", (input, 0.0, None)),
                      ("dropout_forward", (input, 1.0, generator)),
                      ("dropout_backward", (randn(*input.shape), randn(*input.shape)))]
    return cases
