"""The conv section: one training step of the study's convnet and siamese_aux (forward, cross-entropy losses,
backward, Adam), minidl cpp and python against the study's own torch.nn twin with autograd, channels-last
(torch's fastest eager path on CPUs), all from the same weights, as minidl.pairs trains them."""
import torch

from ..pairs.dl_models import copy_from_torch
from ..pairs.models import build_model
from ..pairs.train import TrainConfig
from ..pairs.trainers import MinidlTrainer, TorchTrainer
from .ceilings import gemm_ceiling
from .config import CHECK_RTOL
from .measure import Variant, backend_names, record
from .report import progress
from .train import check_losses, print_check, time_steps

MODELS = ("convnet", "siamese_aux")


def step_flops(name, batch):
    """Multiply-adds x 2 of one training step: each conv and linear layer forward, weight gradient and input
    gradient (none for the first layer, whose input is data), counted on the torch twin's shapes."""
    model, macs = build_model(name, "torch"), []

    def hook(module, inputs, output):
        per_output = module.weight[0].numel()  # in_channels * kh * kw, or in_features
        macs.append(output.numel() * per_output)
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(batch, 2, 14, 14))
    return 2 * (3 * sum(macs) - macs[0])


def step_fn(trainer, x, y, c):
    """One training step of the trainer (a one-batch epoch: the study's per-step work); returns the loss."""
    order = torch.arange(len(x), device=x.device)

    def step():
        return trainer.epoch(x, y, c, order)[1][0]
    return step


def conv_variants(name, batch, device, seed=0):
    """minidl cpp and python and torch steps of NAME from the same initial weights and batch."""
    torch.manual_seed(seed)
    ref = build_model(name, "torch").to(device)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 2, 14, 14, generator=g).to(device)
    y, c = torch.randint(0, 2, (batch,), generator=g).to(device), torch.randint(0, 10, (batch, 2), generator=g).to(device)
    config = TrainConfig(batch_size=batch, cosine=False, device=str(device))
    variants = []
    for backend in backend_names():
        net = copy_from_torch(build_model(name, "minidl").to(device=device), ref)
        variants.append(Variant(backend, step_fn(MinidlTrainer(net, config, device), x, y, c), backend=backend))
    twin = build_model(name, "torch").to(device)
    twin.load_state_dict(ref.state_dict())
    variants.append(Variant("torch", step_fn(TorchTrainer(twin, config, device), x, y, c), grad=True))
    return variants


def run_conv(cfg, threads, device, sync, checks):
    """Training steps of the study's convnets: check the losses agree, then time them against the GEMM ceiling."""
    out = []
    gemm, gemm_flop = gemm_ceiling(cfg["gemm_n"], device)
    batch = cfg.get("conv_batch", 100)
    for name in MODELS:
        case = f"{name} b{batch}"
        progress(f"{case}, {threads} thread(s)")
        # float32 losses of ~0.4-2.5 after three Adam steps: compared to 1e-4, relative or absolute
        check = check_losses(conv_variants(name, batch, device), seed=100, atol=CHECK_RTOL)
        checks.append(dict(case=case, threads=threads, device=device, **check))
        print_check(case, threads, check)
        flop = step_flops(name, batch)
        stats = time_steps(conv_variants(name, batch, device), flop, gemm, gemm_flop, cfg, sync)
        out += record("conv", case, threads, device, stats, net=name, batch=batch, flop=flop)
    return out
