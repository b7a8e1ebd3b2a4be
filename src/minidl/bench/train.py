"""The train and mlp sections: whole training steps of minidl's backends against torch.nn + autograd."""
import torch

import minidl

from .ceilings import gemm_ceiling
from .config import CHECK_ATOL, CHECK_RTOL, CHECK_STEPS, LR, MOMENTUM
from .matmuls import matmuls_fn, step_flops
from .measure import Mode, Variant, add_speedups, backend_names, measure, record, split_ceiling
from .nets import build_minidl_net, torch_copy
from .report import progress


def minidl_step_fn(net, x, t, update=True):
    """One minidl training step (forward, loss, backward, SGD step); returns the loss. With update=False,
    no SGD step: timed beside the whole step, it shows what the update costs (gradients then keep
    accumulating and the weights never change)."""
    crit, opt = minidl.LossMSE(), minidl.SGD(net.param(), lr=LR, momentum=MOMENTUM)

    def step():  # gradients start at zero; step(zero_grad=True) zeroes them for the next step in its pass
        loss = crit.forward(net.forward(x), t)
        net.backward(crit.backward(), input_grad=False)
        if update:
            opt.step(zero_grad=True)
        return loss
    return step


def torch_step_fn(net, x, t):
    """One torch.nn + autograd + torch.optim.SGD training step; returns the loss."""
    crit, opt = torch.nn.MSELoss(), torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)

    def step():
        loss = crit(net(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step


def train_variants(sizes, batch, device, seed=0, without_update=False):
    """Training-step variants (minidl cpp, minidl python, torch) from the same initial weights; with
    without_update, also "cpp fwd+bwd" (the cpp step without its SGD update) where the extension loads,
    and "matmuls alone" (the step's matrix products and nothing else, see matmuls_fn)."""
    x, t = torch.rand(batch, sizes[0], device=device), torch.rand(batch, sizes[-1], device=device)
    variants = []
    names = backend_names()
    for name in names:
        variants.append(Variant(name, minidl_step_fn(build_minidl_net(sizes, device, seed), x, t), backend=name))
    if without_update and "cpp" in names:
        variants.append(Variant("cpp fwd+bwd", minidl_step_fn(build_minidl_net(sizes, device, seed), x, t, update=False),
                                backend="cpp"))
    if without_update:
        variants.append(Variant("matmuls alone", matmuls_fn(sizes, batch, device)))
    variants.append(Variant("torch", torch_step_fn(torch_copy(build_minidl_net(sizes, device, seed)), x, t),
                            grad=True))
    return variants


def check_losses(variants, steps=CHECK_STEPS, seed=None, atol=CHECK_ATOL):
    """Run `steps` steps of each variant (with seed, torch's RNG seeded seed + k before step k: the same dropout
    masks for every variant); assert they give the last variant's losses. Returns the check's record."""
    losses = {}
    for v in variants:
        with Mode(v):
            losses[v.name] = []
            for k in range(steps):
                if seed is not None:
                    torch.manual_seed(seed + k)
                losses[v.name].append(v.fn().detach().item())
    ref = torch.tensor(losses[variants[-1].name])
    ok = all(torch.allclose(torch.tensor(ls), ref, rtol=CHECK_RTOL, atol=atol) for ls in losses.values())
    assert ok, f"training-step losses differ between variants: {losses}"
    return {"losses": losses, "steps": steps, "rtol": CHECK_RTOL, "ok": ok}


def print_check(case, threads, check):
    """One line: each variant's loss after the check's steps, and whether they agree."""
    print(f"loss check {case} ({threads} thread(s)): " + ", ".join(
        f"{v} {ls[-1]:.6g}" for v, ls in check["losses"].items())
        + f" after {check['steps']} steps: {'ok' if check['ok'] else 'MISMATCH'} (rtol {CHECK_RTOL:g})")


def time_steps(variants, flop, gemm, gemm_flop, cfg, sync):
    """Time the variants beside the GEMM ceiling; their stats with % of its rate, speed-ups and GFLOP/s."""
    stats = measure(variants + [gemm], cfg["repeats"], cfg["target"], sync)
    split_ceiling(stats, flop, gemm_flop, "pct_gemm_peak")
    add_speedups(stats)
    for s in stats.values():
        s["gflops"] = flop / s["median_s"] / 1e9
    return stats


def run_training(section, nets, cfg, threads, device, sync, checks):
    """Training steps of each (name, sizes, batch) net: check the losses agree, then time them."""
    out = []
    gemm, gemm_flop = gemm_ceiling(cfg["gemm_n"], device)
    for name, sizes, batch in nets:
        case = f"{name} b{batch}"
        progress(f"{case}, {threads} thread(s)")
        check = check_losses(train_variants(sizes, batch, device))
        checks.append(dict(case=case, threads=threads, device=device, **check))
        print_check(case, threads, check)
        flop = step_flops(sizes, batch)
        variants = train_variants(sizes, batch, device, without_update=section == "mlp")
        stats = time_steps(variants, flop, gemm, gemm_flop, cfg, sync)
        out += record(section, case, threads, device, stats, net="-".join(map(str, sizes)), batch=batch, flop=flop)
    return out
