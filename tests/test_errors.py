"""Bad input gets a clear Python exception naming the module or op and the shapes, dtypes or devices."""
import pytest
import torch

import minidl as dl

f32, f64 = torch.float32, torch.float64


def _linear():
    torch.manual_seed(0)
    return dl.Linear(2, 25)


CASES = [
    # (what, call, exception type, fragments the message must contain)
    ("wrong input width", lambda: _linear().forward(torch.rand(3, 5)), ValueError,
     ["Linear(2, 25", "forward", "[N, 2]", "[3, 5]"]),
    # inputs of shape [*, in_features] work (tests/test_classify.py); a wrong last dimension or a 0-d input does not
    ("1-d input of the wrong width", lambda: _linear().forward(torch.rand(3)), ValueError,
     ["Linear(2, 25", "forward", "[*, 2]", "[3]"]),
    ("3-d input of the wrong width", lambda: _linear().forward(torch.rand(4, 2, 3)), ValueError,
     ["Linear(2, 25", "forward", "[*, 2]", "[4, 2, 3]"]),
    ("0-d input", lambda: _linear().forward(torch.tensor(1.0)), ValueError, ["Linear(2, 25", "[*, 2]", "[]"]),
    ("3-d grad shape", lambda: _run_then(_linear(), torch.rand(4, 3, 2), torch.rand(3, 4, 25)), ValueError,
     ["Linear(2, 25", "backward", "[4, 3, 25]", "[3, 4, 25]"]),
    ("float64 input into float32 weights", lambda: _linear().forward(torch.rand(3, 2, dtype=f64)), TypeError,
     ["Linear(2, 25", "input", "Double" if dl.get_backend() == "cpp" else "float64"]),
    ("integer input", lambda: _linear().forward(torch.ones(3, 2, dtype=torch.int64)), TypeError,
     ["Linear(2, 25", "input", "Long" if dl.get_backend() == "cpp" else "int64"]),
    ("integer tanh input", lambda: dl.Tanh().forward(torch.ones(3, dtype=torch.int32)), TypeError,
     ["Tanh()", "float32 or float64"]),
    ("wrong grad shape", lambda: _run_then(_linear(), torch.rand(3, 2), torch.rand(3, 7)), ValueError,
     ["Linear(2, 25", "backward", "[3, 25]", "[3, 7]"]),
    ("relu grad shape", lambda: _run_then(dl.ReLU(), torch.rand(4, 3), torch.rand(3, 4)), ValueError,
     ["ReLU()", "backward", "[4, 3]", "[3, 4]"]),
    ("tanh grad dtype", lambda: _run_then(dl.Tanh(), torch.rand(4), torch.rand(4, dtype=f64)), TypeError,
     ["Tanh()", "backward", "grad_output"]),
    ("linear backward first", lambda: _linear().backward(torch.rand(3, 25)), RuntimeError,
     ["Linear(2, 25", "backward", "before forward"]),
    ("relu backward first", lambda: dl.ReLU().backward(torch.rand(3)), RuntimeError, ["ReLU()", "before forward"]),
    ("loss backward first", lambda: dl.LossMSE().backward(), RuntimeError, ["LossMSE", "before forward"]),
    ("loss target shape", lambda: dl.LossMSE().forward(torch.rand(3, 2), torch.rand(3)), ValueError,
     ["LossMSE().forward", "[3, 2]", "[3]"]),
    ("loss integer target", lambda: dl.LossMSE().forward(torch.rand(3), torch.ones(3, dtype=torch.int64)),
     TypeError, ["LossMSE().forward", "int64"]),
    ("linear zero features", lambda: dl.Linear(0, 3), ValueError, ["Linear", "in_features", "0"]),
    ("sequential non-module", lambda: dl.Sequential(dl.ReLU(), torch.nn.ReLU()), TypeError,
     ["Sequential", "ReLU", "position 1"]),
    ("sgd lr", lambda: dl.SGD(_linear().param(), lr=0), ValueError, ["SGD", "lr > 0", "0"]),
    ("sgd negative momentum", lambda: dl.SGD(_linear().param(), lr=0.1, momentum=-1), ValueError, ["momentum"]),
    ("list input", lambda: _linear().forward([[1.0, 2.0]]), TypeError, ["Linear(2, 25", "forward", "Tensor"]),
    ("sgd lr not a number", lambda: dl.SGD(_linear().param(), lr="0.1"), TypeError, ["SGD", "lr", "number", "str"]),
    ("conv unknown device", lambda: dl.Conv2d(1, 2, 3, device="cuda:99"), RuntimeError,
     ["Conv2d: cannot make parameters", "device='cuda:99'"]),
    ("batch norm unknown device", lambda: dl.BatchNorm2d(3, device="cuda:99"), RuntimeError,
     ["BatchNorm2d: cannot make parameters", "device='cuda:99'"]),
    ("linear integer dtype", lambda: dl.Linear(2, 3, dtype=torch.int64), TypeError,
     ["Linear", "float32 or float64", "int64"]),
    ("linear on a missing device", lambda: dl.Linear(2, 3, device="cuda:99" if torch.cuda.is_available() else "cuda"),
     RuntimeError, ["Linear", "device='cuda"]),
    ("sgd not pairs", lambda: dl.SGD([torch.rand(3)], lr=0.1), TypeError, ["SGD", "pairs"]),
    ("unknown backend", lambda: dl.set_backend("fortran"), ValueError, ["set_backend", "fortran"]),
]


def _run_then(module, x, grad):
    module.forward(x)
    return module.backward(grad)


@pytest.mark.parametrize("what,call,exc,fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input_message(backend_name, what, call, exc, fragments):
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    # dtype names differ between C++ (Double) and Python (torch.float64): accept either spelling.
    spelled = {"Double": "float64", "Long": "int64", "float64": "Double", "int64": "Long"}
    for fragment in fragments:
        assert fragment in message or spelled.get(fragment, fragment) in message, (fragment, message)


def test_mixed_devices_name_both_devices(backend_name):
    meta = torch.empty(3, 2, device="meta")
    with pytest.raises(RuntimeError, match=r"Linear\(2, 25.*forward.*input on cpu like weight, got meta"):
        _linear().forward(meta)
