"""Which face goes into which batch slot of which training step, and which faces validate.

Everything here is a pure function of its arguments (a seed, a step, names), never of a random
state that a process carries: that is what makes a resumed run, a run with DataLoader workers and
a run split over DDP ranks see exactly the samples of one uninterrupted process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import Sampler

__all__ = ["StepSampler", "batch_indices", "split_by_identity"]


def batch_indices(seed: int, step: int, batch_size: int, n: int) -> list[int]:
    """Dataset indices of the global batch of ``step``: a function of ``(seed, step)`` only.

    Batches walk through epoch-wise random permutations of ``range(n)`` (seeded by
    ``(seed, epoch)``), so every image is seen once per epoch.
    """
    out, perms = [], {}
    for pos in range(step * batch_size, (step + 1) * batch_size):
        epoch, i = divmod(pos, n)
        if epoch not in perms:
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            perms[epoch] = torch.randperm(n, generator=g).tolist()
        out.append(perms[epoch][i])
    return out


class StepSampler(Sampler[list[tuple[int, ...]]]):
    """Batches of training draws ``(index, step, slot[, patch])`` for steps ``start .. steps-1``.

    A draw is what :class:`~ctcnet.data.datasets.FaceSRDataset` needs to make a sample that
    depends on nothing else: the image (:func:`batch_indices`), the step and batch slot that key
    its random stream, and the crop side of that step (``patch_at(step)``; without ``patch_at``
    the dataset's own ``patch_size``). A sampler started at a later step yields exactly the
    tail of the one started at 0, which is what makes resuming exact. Under DDP, rank ``r`` of
    ``world`` takes the slots ``r * B / world ... (r + 1) * B / world - 1``.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        steps: int,
        start: int = 0,
        patch_at: Callable[[int], int] | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if n < 1 or batch_size < 1 or batch_size % world:
            raise ValueError(f"need n >= 1 and a batch size divisible by {world}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.steps = start, steps
        self.patch_at = patch_at
        per_rank = batch_size // world
        self.slots = range(rank * per_rank, (rank + 1) * per_rank)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, ...]]]:
        for step in range(self.start, self.steps):
            idx = batch_indices(self.seed, step, self.batch_size, self.n)
            patch = () if self.patch_at is None else (self.patch_at(step),)
            yield [(idx[slot], step, slot, *patch) for slot in self.slots]


def split_by_identity(identities: Sequence[str], n: int) -> tuple[list[int], list[int]]:
    """Carve about ``n`` validation items out of a training set without splitting an identity.

    Whole identities are taken in a fixed order (by the SHA-256 of their name, so the choice
    does not depend on the seed or the file order), skipping any that would exceed ``n`` items.
    Returns ``(train_indices, val_indices)``; raises ``ValueError`` when no such split exists.
    """
    groups: dict[str, list[int]] = {}
    for i, who in enumerate(identities):
        groups.setdefault(who, []).append(i)
    val: list[int] = []
    for who in sorted(groups, key=lambda w: hashlib.sha256(w.encode()).hexdigest()):
        if len(val) + len(groups[who]) <= n:
            val += groups[who]
    if not val or len(val) == len(identities):
        raise ValueError(
            f"cannot carve {n} validation faces from {len(identities)} training faces "
            f"of {len(groups)} identities"
        )
    chosen = set(val)
    return [i for i in range(len(identities)) if i not in chosen], sorted(val)
