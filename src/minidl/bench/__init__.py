"""Benchmarks: minidl's kernels and training steps against PyTorch, and the machine's own ceilings.

    python -m minidl.bench                      # everything, 1 and 2 threads (about 3 minutes)
    python -m minidl.bench --quick              # a subset at 1 thread, under a minute
    python -m minidl.bench --sections ops,train --threads 2 --json out.json
    python -m minidl.bench --device cuda        # on the GPU (adds 2^26 elements; timings synchronise)

Sections: ceilings (GEMM and copy), calls (one cpp op call through torch.ops.minidl vs through
minidl._C.direct, the per-call cost that small networks pay), ops (each op forward + backward),
layers (the convnet study's layers forward + backward at its shapes, and its Adam step, against the
fastest torch variant of each: NCHW or channels-last, Adam foreach or fused), train (the disk
network's training step), mlp (an MLP 784-1024-1024-10's training step, beside the same step
without its SGD update and the step's matrix products alone).

Method. Every measurement is a perf_counter loop of `inner` calls (chosen so that one loop lasts
about `--target` seconds) after a warm-up; it is repeated, and the median is reported. The
variants being compared (minidl cpp, minidl python, torch) are timed in turn within each repeat,
in a rotating order, so that the host's drift in speed hits them all alike; each loop follows one
untimed call of its own variant, so that every timed call comes after a call like it, as in a
training loop, never first after another variant (whose data has pushed its own out of the
caches: in one run, an MLP step's first call after a switch took 20 % longer than the next ones); "x vs torch" is the
median over repeats of the per-repeat ratio torch time / variant time (> 1: faster than torch).
Fractions of the machine's limit ("% GEMM peak", "% copy BW") come from a ceiling timed in the
same rotation as the variants (a torch.mm of n^3 for matrix work, a Tensor.copy_ of the same
number of elements for elementwise work), as the median over repeats of the per-repeat ratio: a
shared host that slows down for a while slows the ceiling alike. The ceilings section reports the
same two ceilings on their own (best repeat), at each thread count.

minidl runs with autograd off (torch.no_grad, as its README does); torch runs with autograd on and
resets .grad to None before each backward (what optimizer.zero_grad() does by default), so that
it writes gradients rather than accumulating them. Prints markdown tables; writes every raw repeat
and median to JSON (--json, default bench.json).
"""
from .ceilings import copy_ceiling, gemm_ceiling, run_ceilings
from .cli import main, make_config, parse_args
from .config import CHECK_ATOL, CHECK_RTOL, CHECK_STEPS, CONFIGS, DISK_SIZES, LR, MLP_SIZES, MOMENTUM, SECTIONS
from .layers import layer_cases, run_layers
from .machine import cpu_model, header, machine_info
from .matmuls import matmuls_fn, step_flops
from .measure import Variant, add_speedups, calibrate, make_sync, measure, record, split_ceiling, timed
from .nets import build_minidl_net, mlp_arguments, torch_copy
from .report import fmt_time, md_table, tables
from .train import check_losses, minidl_step_fn, torch_step_fn, train_variants
