"""CosineAnnealingLR against torch.optim.lr_scheduler.CosineAnnealingLR, over dl.SGD and dl.Adam."""
import pytest
import torch

import minidl as dl


def _pairs():
    return [(torch.zeros(3), torch.zeros(3))]


def _torch_lrs(make_optimizer, epochs, **options):
    opt = make_optimizer([torch.zeros(3, requires_grad=True)])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, **options)
    lrs = [schedule.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        schedule.step()
        lrs.append(schedule.get_last_lr())
    return lrs


OPTIMIZERS = {
    "sgd": (lambda ps: dl.SGD(ps, lr=0.05, momentum=0.9), lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)),
    "adam": (lambda ps: dl.Adam(ps, lr=5e-3), lambda ps: torch.optim.Adam(ps, lr=5e-3)),
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("T_max,eta_min,epochs", [(5, 0.0, 12), (5, 1e-3, 12), (1, 0.0, 4), (30, 1e-4, 30)])
def test_values_are_torchs_epoch_by_epoch(optimizer, T_max, eta_min, epochs):
    make, make_torch = OPTIMIZERS[optimizer]
    opt = make(_pairs())
    schedule = dl.CosineAnnealingLR(opt, T_max, eta_min=eta_min)
    lrs = [schedule.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        schedule.step()
        lrs.append(schedule.get_last_lr())
        assert opt.lr == lrs[-1][0]  # what the next epoch's steps use
    assert lrs == _torch_lrs(make_torch, epochs, T_max=T_max, eta_min=eta_min)
    assert schedule.last_epoch == epochs


def test_the_study_call_reaches_zero_at_the_last_epoch_and_steps_with_it(backend_name):
    """CosineAnnealingLR(optimizer, epochs), as the study calls it: lr 0 after the last epoch, which the optimizers
    accept (a step that changes nothing but the state)."""
    for make in (lambda ps: dl.SGD(ps, lr=0.05, momentum=0.9), lambda ps: dl.Adam(ps, lr=5e-3)):
        p, g = torch.ones(4), torch.full((4,), 0.5)
        opt = make([(p, g)])
        schedule = dl.CosineAnnealingLR(opt, 3)
        for _ in range(3):
            opt.step()
            schedule.step()
        assert abs(opt.lr) < 1e-18
        before = p.clone()
        opt.lr = 0.0
        opt.step()
        assert torch.equal(p, before)


def test_a_schedule_changes_the_training_as_torchs_does(backend_name):
    """Adam under the schedule: the same parameters as torch.optim.Adam under torch's, epoch after epoch."""
    torch.manual_seed(0)
    p = torch.randn(10, dtype=torch.float64)
    g = torch.zeros_like(p)
    leaf = p.clone().requires_grad_()
    opt, ref = dl.Adam([(p, g)], lr=0.1), torch.optim.Adam([leaf], lr=0.1)
    schedule = dl.CosineAnnealingLR(opt, 4, eta_min=0.01)
    ref_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(ref, 4, eta_min=0.01)
    for _ in range(6):
        for _ in range(3):
            g.copy_(torch.randn_like(p))
            leaf.grad = g.clone()
            opt.step()
            ref.step()
        schedule.step()
        ref_schedule.step()
        torch.testing.assert_close(p, leaf.detach(), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("args,error,message", [
    ((0,), ValueError, r"T_max to be an integer >= 1, got 0"),
    ((2.5,), ValueError, r"T_max to be an integer >= 1, got 2.5"),
    ((5, -0.1), ValueError, r"eta_min to be a number >= 0, got -0.1"),
])
def test_bad_arguments_raise_naming_the_schedule(args, error, message):
    opt = dl.SGD(_pairs(), lr=0.1)
    with pytest.raises(error, match=r"^CosineAnnealingLR: expected " + message):
        dl.CosineAnnealingLR(opt, *args)


def test_an_optimizer_without_lr_is_refused():
    with pytest.raises(TypeError, match=r"^CosineAnnealingLR: expected an optimizer with a number `lr` .*got object"):
        dl.CosineAnnealingLR(object(), 5)


def test_exported_beside_the_optimizers():
    assert dl.optim.CosineAnnealingLR is dl.CosineAnnealingLR and dl.optim.Adam is dl.Adam
    assert {"Adam", "CosineAnnealingLR"} <= set(dl.__all__)
