"""state_dict round trips, atomic save/load, the non-finite loss check, memory and thread safety."""
import os
import resource
import threading

import pytest
import torch

import minidl as dl


def _net(seed=0):
    torch.manual_seed(seed)
    return dl.Sequential(dl.Linear(2, 25), dl.ReLU(), dl.Linear(25, 25), dl.Tanh(), dl.Linear(25, 2))


def test_state_dict_names_and_round_trip(tmp_path):
    net, other = _net(0), _net(1)
    sd = net.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    dl.save(sd, tmp_path / "net.pt")
    opt = dl.SGD(other.param(), lr=0.1)
    other.load_state_dict(dl.load(tmp_path / "net.pt"))
    for (p, _), (q, _) in zip(net.param(), other.param()):
        assert torch.equal(p, q)
    assert all(p is q for (p, _), (q, _) in zip(other.param(), opt.params))  # loaded in place
    x = torch.rand(5, 2)
    assert torch.equal(net(x), other(x))


def test_load_state_dict_rejects_wrong_names_and_shapes():
    net = _net()
    sd = dict(net.state_dict())
    sd["0.weight"] = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"load_state_dict: 0.weight expected shape \[25, 2\], got \[3, 2\]"):
        net.load_state_dict(sd)
    before = net.state_dict()["0.bias"].clone()
    sd = dict(net.state_dict())
    sd.pop("4.bias")
    sd["9.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['4.bias'\], unexpected keys \['9.weight'\]"):
        net.load_state_dict(sd)
    assert torch.equal(net.state_dict()["0.bias"], before)  # nothing half-loaded


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "net.pt"
    dl.save(_net(0).state_dict(), path)
    good = path.read_bytes()

    def crash(obj, f):
        f.write(b"partial garbage")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        dl.save(_net(1).state_dict(), path)
    assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["net.pt"]  # no temporary file left behind


def test_load_and_save_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="minidl.load: no file"):
        dl.load(tmp_path / "absent.pt")
    with pytest.raises(FileNotFoundError, match="minidl.save: folder"):
        dl.save({}, tmp_path / "no" / "such" / "dir.pt")


def test_nonfinite_loss_stops_training_and_names_the_step(backend_name):
    net = _net()
    crit, opt = dl.LossMSE(), dl.SGD(net.param(), lr=1e6)
    x, t = torch.rand(50, 2) * 10, torch.rand(50, 2)
    with pytest.raises(FloatingPointError, match=r"LossMSE: the loss became (nan|inf) at step \d+"):
        for _ in range(100):
            crit.forward(net.forward(x), t)
            opt.zero_grad()
            net.backward(crit.backward())
            opt.step()
    assert 1 < crit.steps < 100
    lenient = dl.LossMSE(check_finite=False)
    assert not torch.isfinite(lenient.forward(torch.tensor([float("nan")]), torch.tensor([0.0])))


def _train(net, seed, steps, out):
    crit, opt = dl.LossMSE(), dl.SGD(net.param(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.rand(10, 2, generator=gen)
        crit.forward(net.forward(x), x.flip(1))
        opt.zero_grad()
        net.backward(crit.backward())
        opt.step()
    out[seed] = [p.clone() for p, _ in net.param()]


def _in_threads(seeds, together):
    """Train one network per seed, each in a new thread: all at once, or one thread after the other."""
    out = {}
    threads = [threading.Thread(target=_train, args=(_net(s), s, 300, out)) for s in seeds]
    for t in threads:
        t.start()
        if not together:
            t.join()
    for t in threads:
        t.join()
    return out


def test_two_threads_train_like_one_after_the_other(backend_name):
    """Two trainings at once in two threads give what each gives alone: no state is shared between calls.

    Both sides run in new threads, because a new thread does not inherit the main thread's
    torch.set_num_threads for MKL (it takes the machine's default), and MKL's float32 products at
    these shapes round differently with 1 and 2 threads on some CPUs (seen on AMD EPYC)."""
    # The networks are built in turn on each side: torch's global generator, which initialises them, is shared.
    alone = _in_threads((1, 2), together=False)
    together = _in_threads((1, 2), together=True)
    for s in (1, 2):
        for a, b in zip(alone[s], together[s]):
            assert torch.equal(a, b)


def _rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_memory_stays_flat_over_100k_steps(backend_name):
    """100,000 training steps of the disk network: resident memory grows by less than 5 MiB after warm-up."""
    steps = 100_000 if backend_name == "cpp" else 20_000
    net = _net()
    crit, opt = dl.LossMSE(), dl.SGD(net.param(), lr=0.01, momentum=0.9)
    x, t = torch.rand(10, 2), torch.rand(10, 2)
    for i in range(steps + 2_000):
        if i == 2_000:
            start = _rss_mib()
        crit.forward(net.forward(x), t)
        opt.zero_grad()
        net.backward(crit.backward(), input_grad=False)
        opt.step()
    assert _rss_mib() - start < 5, f"RSS grew from {start:.1f} to {_rss_mib():.1f} MiB over {steps} steps"


def test_load_state_dict_changes_nothing_when_a_late_value_fails():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sd = {k: torch.zeros_like(v) for k, v in before.items()}
    sd["4.bias"] = torch.zeros(2, device="meta")  # converts to the parameter's device: fails, last
    with pytest.raises(NotImplementedError, match=r"Sequential\(.*load_state_dict: 4.bias: .*meta"):
        net.load_state_dict(sd)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} was overwritten before the failing value"
    sd["4.bias"] = [0.0, 0.0]
    with pytest.raises(TypeError, match=r"load_state_dict: 4.bias expected a torch.Tensor, got list"):
        net.load_state_dict(sd)
