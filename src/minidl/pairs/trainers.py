"""What differs between the two frameworks in one run: optimizer, schedule, a training epoch, the error rate.

Both trainers take the same steps: per batch, cross-entropy on the comparison logits plus aux_weight times
the digits' cross-entropy where a model has digit logits, gradients, then Adam (or SGD with momentum 0.9);
after each epoch the cosine schedule. The torch one trains torch.nn models with autograd, channels-last (its
fastest eager path on CPUs); the minidl one trains minidl modules through their own backward.
"""

import torch
import torch.nn.functional as F

import minidl as dl


# Pairs per evaluation batch: the activations of 250 stay in cache, where 1,000's spill (torch's eval of
# siamese_aux at 1,000 took 1.6x as long on a 2-core AMD EPYC: docs/performance.md, tools/conv_chunks_bench.py).
EVAL_BATCH = 250


def new_losses(n, config, device):
    """The epoch's summed loss and per-step losses, kept on the device (no sync per batch)."""
    return torch.zeros((), device=device), torch.zeros((n + config.batch_size - 1) // config.batch_size,
                                                       device=device)


def rows(batch, *tensors):
    """The rows BATCH of each tensor (index_select: a quarter of x[batch]'s time on a batch of images)."""
    return (t.index_select(0, batch) for t in tensors)


class TorchTrainer:
    """torch.nn + autograd + torch.optim."""

    def __init__(self, model, config, device):
        self.model = model.to(device=device, memory_format=torch.channels_last)  # conv weights: faster on CPU
        self.config = config
        params = self.model.parameters()
        self.optimizer = (torch.optim.Adam(params, lr=config.lr) if config.optimizer == "adam"
                          else torch.optim.SGD(params, lr=config.lr, momentum=0.9))
        self.schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, config.epochs)
                         if config.cosine else None)

    def epoch(self, x, y, c, order):
        """One pass over the batches of ORDER; (summed loss, per-step losses), both on device."""
        model, optimizer, config = self.model, self.optimizer, self.config
        total, losses = new_losses(len(order), config, x.device)
        with torch.enable_grad():  # whatever the caller set (minidl's own examples turn it off globally)
            for step, i in enumerate(range(0, len(order), config.batch_size)):
                xb, yb, cb = rows(order[i:i + config.batch_size], x, y, c)
                logits, digits = model(xb)
                loss = F.cross_entropy(logits, yb)
                if digits is not None and config.aux_weight:
                    loss = loss + config.aux_weight * F.cross_entropy(digits.reshape(-1, 10), cb.reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(xb)
                losses[step] = loss.detach()  # checked once per epoch, not synced per step
        if self.schedule is not None:
            self.schedule.step()
        return total, losses

    def errors(self, x, target, batch_size=EVAL_BATCH):
        """Fraction of pairs whose comparison is predicted wrongly (evaluation mode)."""
        model = self.model.eval()
        with torch.inference_mode():
            wrong = sum((model(x[i:i + batch_size])[0].argmax(1) != target[i:i + batch_size]).sum()
                        for i in range(0, len(x), batch_size))
        model.train()
        return int(wrong) / len(x)


class MinidlTrainer:
    """minidl modules, losses, optimizers and schedule: forward, backward, step; no autograd."""

    def __init__(self, model, config, device):
        self.model = model.to(device=device)
        self.config = config
        params = self.model.param()
        self.optimizer = (dl.Adam(params, lr=config.lr) if config.optimizer == "adam"
                          else dl.SGD(params, lr=config.lr, momentum=0.9))
        self.schedule = dl.CosineAnnealingLR(self.optimizer, config.epochs) if config.cosine else None
        # the study checks the per-step losses once per epoch, naming epoch and step
        self.loss, self.aux_loss = dl.CrossEntropyLoss(check_finite=False), dl.CrossEntropyLoss(check_finite=False)

    def epoch(self, x, y, c, order):
        """One pass over the batches of ORDER; (summed loss, per-step losses), both on device."""
        model, optimizer, config = self.model, self.optimizer, self.config
        total, losses = new_losses(len(order), config, x.device)
        with torch.no_grad():
            for step, i in enumerate(range(0, len(order), config.batch_size)):
                xb, yb, cb = rows(order[i:i + config.batch_size], x, y, c)
                logits, digits = model.forward(xb)
                loss = self.loss.forward(logits, yb)
                grad_digits = None
                if digits is not None and config.aux_weight:
                    aux = self.aux_loss.forward(digits.reshape(-1, 10), cb.reshape(-1))
                    loss = loss + config.aux_weight * aux
                    grad_digits = self.aux_loss.backward(config.aux_weight).view(-1, 2, 10)
                optimizer.zero_grad()  # the model's gradients, without walking its modules
                model.backward(self.loss.backward(), grad_digits)
                optimizer.step()
                total += loss * len(xb)
                losses[step] = loss
        if self.schedule is not None:
            self.schedule.step()
        return total, losses

    def errors(self, x, target, batch_size=EVAL_BATCH):
        """Fraction of pairs whose comparison is predicted wrongly (evaluation mode)."""
        model = self.model.eval()
        with torch.no_grad():
            wrong = sum((model.call(x[i:i + batch_size])[0][0].argmax(1) != target[i:i + batch_size]).sum()
                        for i in range(0, len(x), batch_size))
        model.train()
        return int(wrong) / len(x)


def trainer_for(model, config, device):
    """The trainer of MODEL's framework, which must be config.framework."""
    framework = "minidl" if isinstance(model, dl.Module) else "torch"
    if framework != config.framework:
        raise ValueError(f"TrainConfig: framework {config.framework!r}, but the model is a "
                         f"{'minidl Module' if framework == 'minidl' else 'torch.nn.Module'}; build it with "
                         f"build_model(name, framework={config.framework!r})")
    return (MinidlTrainer if framework == "minidl" else TorchTrainer)(model, config, device)
