"""Training on several processes (``torchrun``, DistributedDataParallel).

Each of the ``WORLD_SIZE`` ranks trains on ``batch_size / WORLD_SIZE`` slots of every global
batch (:class:`~ctcnet.data.sampling.StepSampler`), DDP averages the gradients, and rank 0 alone
validates, logs and saves. For N ranks to take the same steps as one process with the whole batch,
two things must hold: every slot's sample is a function of (seed, step, slot) only, and every
layer computes what it would compute on the whole batch. Convolutions and the L1 loss (a mean over
equal halves) do. **BatchNorm does not**: in training mode it normalises with the statistics of
the batch it sees, and a rank sees only its share, so two ranks of batch b/2 compute another
function than one process of batch b (the FSAU hourglasses of CTCNet use BatchNorm).
:class:`GlobalBatchNorm2d` normalises with the statistics of the global batch instead, through
differentiable all-reduces, and updates the running statistics from them. It is on by default
under DDP (``TrainConfig.sync_batchnorm``), because the recipe's batch is the global batch.
``torch.nn.SyncBatchNorm`` does the same on GPUs, but refuses CPU tensors (torch 2.13), so this
one is used on every device; it costs two small all-reduces per BatchNorm layer and step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import TrainingError
from .runtime import pick_device

__all__ = ["GlobalBatchNorm2d", "Ranks", "agree", "data_parallel", "join", "leave"]


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes."""

    world: int
    rank: int
    device: torch.device

    @property
    def master(self) -> bool:
        """Rank 0: the one that validates, logs and saves."""
        return self.rank == 0


def join(device: str | None, batch_size: int) -> Ranks:
    """The ranks and this process's device; joins the process group under ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    try:
        chosen = pick_device(device)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    if world > 1:
        if batch_size % world:
            raise TrainingError(f"batch size {batch_size} is not divisible by {world} ranks")
        if chosen.type == "cuda":
            chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(chosen)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return Ranks(world, rank, chosen)


def leave(ranks: Ranks) -> None:
    """Leave the process group that :func:`join` joined."""
    if ranks.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def agree(loss: float, stop: bool, device: torch.device) -> tuple[float, bool]:
    """The mean loss over the ranks, and whether any rank was asked to stop (so all stop)."""
    if not (dist.is_available() and dist.is_initialized()):
        return loss, stop
    t = torch.tensor([loss, float(stop)], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return t[0].item() / dist.get_world_size(), bool(t[1].item())


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over all ranks, differentiable: the gradient of each rank's input is
    the sum of the gradients that reach the output on every rank."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training mode under DDP, normalises with the mean and variance of the
    global batch (all ranks together) and updates its running statistics from them; otherwise it
    is BatchNorm2d. Same parameters and buffers, so checkpoints do not change."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distributed = dist.is_available() and dist.is_initialized()
        if not (self.training and distributed and dist.get_world_size() > 1):
            return super().forward(x)
        dims = (0, 2, 3)
        x32 = x.float()
        local = torch.cat([x32.sum(dims), x32.new_tensor([x32[:, 0].numel()])])
        total = _SumOverRanks.apply(local)
        n = total[-1]
        mean = total[:-1] / n
        centred = x32 - mean[None, :, None, None]
        var = _SumOverRanks.apply(centred.square().sum(dims)) / n
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * n / (n - 1))
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = self.momentum
        if factor is None:  # a cumulative average, as BatchNorm2d does with momentum=None
            factor = 1.0 / self.num_batches_tracked.item()
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), factor)


def data_parallel(net: nn.Module, ranks: Ranks, sync_batchnorm: bool) -> nn.Module:
    """``net`` itself for one process; else ``net`` in DistributedDataParallel, its BatchNorm
    layers turned into :class:`GlobalBatchNorm2d` in place when ``sync_batchnorm``."""
    if ranks.world == 1:
        return net
    if sync_batchnorm:
        for module in net.modules():
            if type(module) is nn.BatchNorm2d:
                module.__class__ = GlobalBatchNorm2d
    device_ids = [ranks.device.index] if ranks.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=device_ids)

