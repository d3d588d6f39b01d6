"""Batches cut from in-memory tensors, with a data order drawn from (seed, epoch).

A per-row ``Dataset`` plus collate is measurably slower than slicing whole batches, and a
``DataLoader`` without its own generator draws from the global RNG, which breaks bit-identical
resume. Here each batch is one index (or slice) into a dict of tensors, the shuffle order of epoch
``e`` comes from a generator seeded with ``(seed, e)``, and every loader has its own generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

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


class EpochBatchSampler(Sampler[Index]):
    """Yields one batch index per step: slices in order, or a permutation seeded by ``(seed, epoch)``.

    Args:
        length: Number of rows.
        batch_size: Rows per batch (the last batch may be smaller).
        shuffle: Draw a new order each epoch.
        seed: Base seed of the order.
    """

    def __init__(self, length: int, batch_size: int, shuffle: bool, seed: int) -> None:
        self.length = length
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch (resumed runs included)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.length + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[Index]:
        starts = range(0, self.length, self.batch_size)
        if not self.shuffle:
            yield from (slice(s, s + self.batch_size) for s in starts)
            return
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator)
        yield from (order[s : s + self.batch_size] for s in starts)


def batch_loader(dataset: TensorBatches, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """A ``DataLoader`` that fetches whole batches from ``dataset`` (no per-row collate)."""
    sampler = EpochBatchSampler(len(dataset), batch_size, shuffle, seed)
    # batch_size=None: the sampler's item already is a batch; the generator keeps the global RNG untouched
    return DataLoader(dataset, sampler=sampler, batch_size=None, generator=torch.Generator().manual_seed(seed))
