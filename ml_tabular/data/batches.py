"""Batches cut from in-memory tensors, with a data order drawn from (seed, epoch).

A per-row ``Dataset`` plus collate is measurably slower than slicing whole batches, and a
``DataLoader`` without its own generator draws from the global RNG, which breaks bit-identical
resume. Here each batch is one index (or slice) into a dict of tensors, the shuffle order of epoch
``e`` comes from a generator seeded with ``(seed, e)``, and every loader has its own generator. Under DDP
each process takes its own share of that order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ml_tabular.errors import DataError

if TYPE_CHECKING:
    import lightning.pytorch as pl

Index = Tensor | slice


class TensorBatches(Dataset):
    """A dict of equally long tensors, indexed a whole batch at a time.

    Args:
        tensors: Named tensors sharing their first dimension.
        make_batch: Optional function building the batch from an index, for batches that are not plain
            rows (sliding windows); defaults to indexing every tensor.
    """

    def __init__(self, tensors: dict[str, Tensor], make_batch: Callable[[Index], dict[str, Tensor]] | None = None):
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"tensors differ in length: { {k: len(t) for k, t in tensors.items()} }")
        self.tensors = tensors
        self.length = lengths.pop()
        self.make_batch = make_batch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: Index) -> dict[str, Tensor]:
        if self.make_batch is not None:
            return self.make_batch(index)
        return {key: tensor[index] for key, tensor in self.tensors.items()}


class EpochBatchSampler(DistributedSampler):
    """Yields one batch index per step: slices in order, or a permutation seeded by ``(seed, epoch)``.

    Under DDP each process takes its own contiguous block of that order (block sizes differ by at most one
    row), so an epoch visits every row exactly once across the processes, validation included, and every
    process makes the same number of steps (its last batch may hold up to ``batch_size + 1`` rows). It is a
    ``DistributedSampler`` so that Lightning keeps it rather than wrapping it in one that pads the batch list
    (a batch seen twice, validation counted twice).

    Args:
        length: Number of rows.
        batch_size: Rows per batch (the last batch may be smaller).
        shuffle: Draw a new order each epoch.
        seed: Base seed of the order.
        num_replicas: Processes sharing the rows (the world size).
        rank: This process's global rank.
    """

    def __init__(
        self, length: int, batch_size: int, shuffle: bool, seed: int, num_replicas: int = 1, rank: int = 0
    ) -> None:
        if 0 < length < num_replicas:
            raise DataError(
                f"a split of {length} row(s) cannot give each of the {num_replicas} processes a row: use fewer "
                "processes (trainer.devices x trainer.num_nodes) or more data."
            )
        super().__init__(range(length), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.length = length
        self.batch_size = batch_size

    def __len__(self) -> int:
        smallest_block = self.length // self.num_replicas
        return (smallest_block + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[Index]:
        start, stop = (self.length * r // self.num_replicas for r in (self.rank, self.rank + 1))
        cuts = [start + i * self.batch_size for i in range(len(self))] + [stop]
        if not self.shuffle:
            yield from (slice(a, b) for a, b in pairwise(cuts))
            return
        # every process draws the same order, so the blocks are disjoint
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator)
        yield from (order[a:b] for a, b in pairwise(cuts))


def process_share(trainer: pl.Trainer | None) -> tuple[int, int]:
    """``(world size, global rank)`` a training process's loaders shard by; ``(1, 0)`` outside a Trainer."""
    return (1, 0) if trainer is None else (trainer.world_size, trainer.global_rank)


def batch_loader(
    dataset: TensorBatches, batch_size: int, shuffle: bool, seed: int, share: tuple[int, int] = (1, 0)
) -> DataLoader:
    """A ``DataLoader`` that fetches whole batches from ``dataset`` (no per-row collate); ``share`` is
    ``(world size, rank)`` under DDP (see :func:`process_share`)."""
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle, seed, *share)
    # batch_size=None: the sampler's item already is a batch; the generator keeps the global RNG untouched
    return DataLoader(dataset, sampler=sampler, batch_size=None, generator=torch.Generator().manual_seed(seed))
