"""Data-parallel training of any minidl Module on torch.distributed (gloo on CPUs, NCCL on GPUs).

    # torchrun --standalone --nproc_per_node=2 train.py
    import minidl as dl, minidl.distributed as dist
    rank, world = dist.init()                      # the process group, from torchrun's environment
    net = dist.DataParallel(dl.Sequential(...))    # same parameters on every rank (rank 0's)
    ... net.backward(grad) ...                     # then every gradient is the mean over the ranks
"""
import contextlib
import datetime
import os

import torch
import torch.distributed as dist

from .nn.module import Module

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)  # torch's own default for gloo collectives
BUCKET_CAP_MB = 25  # DistributedDataParallel's default
BACKENDS = {"gloo": dist.is_gloo_available, "nccl": dist.is_nccl_available}


class DistributedError(RuntimeError):
    """torch.distributed cannot be used as asked: no torchrun environment, no such backend, no group."""


def under_torchrun(environ=None):
    """Whether a launcher (torchrun) set RANK and WORLD_SIZE for this process."""
    environ = os.environ if environ is None else environ
    return "RANK" in environ and "WORLD_SIZE" in environ


def torchrun_env(environ=None):
    """(rank, world_size, local_rank, local_world_size) from torchrun's environment variables."""
    environ = os.environ if environ is None else environ
    missing = [name for name in TORCHRUN_VARS if name not in environ]
    if missing:
        raise DistributedError(
            f"minidl.distributed: {', '.join(missing)} not set: start the program with torchrun "
            f"(torchrun --standalone --nproc_per_node=2 program.py), or give init() an init_method, "
            f"a rank and a world_size")
    values = []
    for name, default in (("RANK", None), ("WORLD_SIZE", None), ("LOCAL_RANK", "0"),
                          ("LOCAL_WORLD_SIZE", "1")):
        text = environ.get(name, default)
        try:
            values.append(int(text))
        except ValueError:
            raise DistributedError(f"minidl.distributed: {name}={text!r} is not an integer") from None
    rank, world, local_rank, local_world = values
    if not 0 <= rank < world:
        raise DistributedError(f"minidl.distributed: RANK={rank} is not in [0, WORLD_SIZE={world})")
    return rank, world, local_rank, local_world


def default_backend(device):
    """gloo for CPU tensors, nccl for CUDA ones."""
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        raise DistributedError(f"minidl.distributed: no backend for device {device!r}; use cpu or cuda")
    return "nccl" if kind == "cuda" else "gloo"


def init(backend=None, device="cpu", timeout=DEFAULT_TIMEOUT, init_method=None, rank=None,
         world_size=None):
    """Start the default process group (from torchrun's environment unless init_method is given, as
    'file://...' or 'tcp://host:port' with rank and world_size); return (rank, world_size).

    A collective that waits longer than `timeout` for another rank raises instead of hanging."""
    backend = backend or default_backend(device)
    if backend not in BACKENDS:
        raise DistributedError(f"minidl.distributed.init: unknown backend {backend!r}; valid: gloo, nccl")
    if not BACKENDS[backend]():
        raise DistributedError(f"minidl.distributed.init: backend {backend} is not available in this "
                               f"torch ({torch.__version__}); gloo comes with every torch, nccl with "
                               f"its CUDA builds on Linux")
    if backend == "nccl" and not torch.cuda.is_available():
        raise DistributedError("minidl.distributed.init: backend nccl needs a CUDA device; none is visible")
    if isinstance(timeout, (int, float)):
        timeout = datetime.timedelta(seconds=timeout)
    if init_method is None:
        rank, world_size, local_rank, _ = torchrun_env()
        init_method = "env://"
    elif rank is None or world_size is None:
        raise DistributedError(f"minidl.distributed.init: init_method {init_method!r} needs rank and world_size")
    else:
        local_rank = rank
    if dist.is_initialized():
        raise DistributedError("minidl.distributed.init: the default process group is already started")
    if backend == "nccl":
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size,
                            timeout=timeout)
    return dist.get_rank(), dist.get_world_size()


def shutdown():
    """Destroy the default process group, if one was started."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank():
    """This process's rank (0 when no group was started)."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size():
    """The number of ranks (1 when no group was started)."""
    return dist.get_world_size() if dist.is_initialized() else 1


class Bucket:
    """Tensors of one device and dtype packed into one flat tensor: one collective for all of them."""

    def __init__(self, indices, tensors):
        self.indices = indices  # positions in the list the bucket was made from
        first = tensors[indices[0]]
        self.dtype, self.device = first.dtype, first.device
        self.sizes = [tensors[i].numel() for i in indices]
        self.nbytes = sum(self.sizes) * first.element_size()
        self.flat = self.views = None  # made at the first pack that needs them

    def pack(self, tensors):
        """The flat tensor to reduce: the bucket's tensors copied into one, or a lone contiguous
        tensor itself (no copy)."""
        if len(self.indices) == 1 and tensors[self.indices[0]].is_contiguous():
            return tensors[self.indices[0]].view(-1)
        if self.flat is None:
            self.flat = torch.empty(sum(self.sizes), dtype=self.dtype, device=self.device)
            self.views = self.flat.split(self.sizes)
        torch.cat([tensors[i].reshape(-1) for i in self.indices], out=self.flat)
        return self.flat

    def unpack(self, flat, tensors):
        """Copy FLAT, as pack returned it, back into the bucket's tensors."""
        if flat is self.flat:
            for i, view in zip(self.indices, self.views):
                tensors[i].copy_(view.view(tensors[i].shape))


def make_buckets(tensors, cap_bytes=BUCKET_CAP_MB * 2 ** 20):
    """Buckets of at most cap_bytes (a larger tensor alone in its own), one device and dtype each,
    filled from the last tensor to the first: a network's last gradients are the first computed."""
    buckets, open_buckets = [], {}  # (device, dtype) -> (indices, bytes) of the bucket being filled
    for i in reversed(range(len(tensors))):
        t = tensors[i]
        key, size = (t.device, t.dtype), t.numel() * t.element_size()
        indices, filled = open_buckets.get(key, ([], 0))
        if indices and filled + size > cap_bytes:
            buckets.append(Bucket(indices, tensors))
            indices, filled = [], 0
        open_buckets[key] = (indices + [i], filled + size)
    return buckets + [Bucket(indices, tensors) for indices, _ in open_buckets.values()]


def _layout(tensors):
    """What the buckets depend on: each tensor's identity, device, dtype and size."""
    return [(id(t), t.device, t.dtype, t.numel()) for t in tensors]


def _check_devices(tensors, who):
    """nccl reduces CUDA tensors only."""
    if dist.get_backend() == "nccl":
        for t in tensors:
            if t.device.type != "cuda":
                raise DistributedError(f"{who}: backend nccl needs CUDA tensors, got one on {t.device}; "
                                       f"move the module with .to('cuda') first, or use gloo")


class DataParallel(Module):
    """Wraps a Module: rank 0's parameters and buffers on every rank, and after each backward every
    parameter gradient is the mean over the ranks (one all-reduce per bucket), so that every rank's
    optimizer takes the same step. With broadcast_buffers (DistributedDataParallel's default) each
    training forward first copies rank 0's buffers (batch norm's running statistics) to every rank.
    param(), state_dict(), train()/eval() and to() are the module's."""

    def __init__(self, module, bucket_cap_mb=BUCKET_CAP_MB, group=None, broadcast_buffers=True):
        if not isinstance(module, Module):
            raise TypeError(f"DataParallel: expected a minidl Module, got {type(module).__name__}")
        if not dist.is_initialized():
            raise DistributedError("DataParallel: no process group; call minidl.distributed.init() first "
                                   "(in a program started by torchrun)")
        if not bucket_cap_mb > 0:
            raise ValueError(f"DataParallel: expected bucket_cap_mb > 0, got {bucket_cap_mb!r}")
        self.module, self.group, self.cap_bytes = module, group, int(bucket_cap_mb * 2 ** 20)
        # only where there are buffers to send and ranks to send them to
        self.broadcast_buffers = bool(broadcast_buffers and module.named_buffers() and dist.get_world_size(group) > 1)
        self.sync = True  # no_sync() turns the averaging off for gradient accumulation
        self._buckets, self._layout = [], None
        self._check_same_module()
        self.broadcast_state()

    def _check_same_module(self):
        """Every rank must wrap the same architecture, or the collectives would mix unrelated tensors."""
        mine = [(name, tuple(t.shape), str(t.dtype)) for name, t in self.state_dict().items()]
        _check_devices(list(self.state_dict().values()), repr(self))
        everyone = [None] * dist.get_world_size(self.group)
        dist.all_gather_object(everyone, mine, group=self.group)
        for r, theirs in enumerate(everyone):
            if theirs != mine:
                raise DistributedError(f"DataParallel: rank {r}'s module differs from rank "
                                       f"{dist.get_rank(self.group)}'s: {theirs} vs {mine}")

    def broadcast_state(self, buffers_only=False):
        """Copy rank 0's parameters and buffers (or its buffers only) into every rank's, bucket by bucket."""
        state = dict(self.named_buffers()) if buffers_only else self.state_dict()
        tensors = [p.detach() for p in dict((id(t), t) for t in state.values()).values()]
        src = dist.get_global_rank(self.group, 0) if self.group is not None else 0
        for bucket in make_buckets(tensors, self.cap_bytes):
            flat = bucket.pack(tensors)
            dist.broadcast(flat, src=src, group=self.group)
            bucket.unpack(flat, tensors)

    @property
    def buckets(self):
        """The gradient buckets, as the next backward packs them."""
        return self._buckets_for([g for _, g in self.module.param()])

    def _buckets_for(self, grads):
        if _layout(grads) != self._layout:  # first use, or after .to() or a change of parameters
            _check_devices(grads, repr(self))
            self._buckets, self._layout = make_buckets(grads, self.cap_bytes), _layout(grads)
        return self._buckets

    def average_gradients(self):
        """Replace every parameter gradient by its mean over the ranks: all buckets' all-reduces are
        started, then waited for (gloo and nccl run them in the background meanwhile)."""
        size = dist.get_world_size(self.group)
        if size == 1:
            return
        grads = [g for _, g in self.module.param()]
        started = []
        for bucket in self._buckets_for(grads):
            flat = bucket.pack(grads)
            started.append((bucket, flat, dist.all_reduce(flat, group=self.group, async_op=True)))
        for bucket, flat, work in started:
            work.wait()
            flat.div_(size)
            bucket.unpack(flat, grads)

    @contextlib.contextmanager
    def no_sync(self):
        """Backwards inside the block only accumulate local gradients; the first one after it averages
        the sum (as DistributedDataParallel.no_sync)."""
        previous, self.sync = self.sync, False
        try:
            yield
        finally:
            self.sync = previous

    def forward_ctx(self, ctx, *input):
        # As DDP: in training, outside no_sync; an evaluation on one rank alone must not wait for the others.
        if self.broadcast_buffers and self.training and self.sync:
            self.broadcast_state(buffers_only=True)
        return self.module.forward_ctx(ctx, *input)

    def backward(self, *gradwrtoutput, **kwargs):
        """The wrapped module's backward (keyword arguments passed on), then the gradients averaged."""
        return self.backward_ctx(self.take_ctx(), *gradwrtoutput, **kwargs)

    def backward_ctx(self, ctx, *gradwrtoutput, **kwargs):
        grad_input = self.module.backward_ctx(ctx, *gradwrtoutput, **kwargs)
        if self.sync:
            self.average_gradients()
        return grad_input

    def named_param(self):
        return self.module.named_param()

    def named_buffers(self):
        return self.module.named_buffers()

    def train(self, mode=True):
        self.training = bool(mode)
        self.module.train(mode)
        return self

    def __repr__(self):
        return f"DataParallel({self.module!r})"

