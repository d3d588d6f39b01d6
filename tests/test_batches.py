"""``EpochBatchSampler``, ``TensorBatches`` and ``batch_loader``: whole batches in a (seed, epoch) order."""

from __future__ import annotations

import math

import pytest
import torch

from ml_tabular.data.batches import EpochBatchSampler, TensorBatches, batch_loader
from ml_tabular.errors import DataError


def rows(n: int) -> TensorBatches:
    """``n`` rows whose ``i`` is the row number and ``x`` a function of it."""
    i = torch.arange(n)
    return TensorBatches({"i": i, "x": i.float()[:, None] * torch.tensor([1.0, -1.0])})


def epoch(sampler: EpochBatchSampler) -> list[list[int]]:
    """The row numbers of every batch of one pass over ``sampler``."""
    return [torch.arange(sampler.length)[index].tolist() for index in sampler]


def test_unshuffled_batches_are_contiguous_slices_covering_every_row_once():
    loader = batch_loader(rows(10), batch_size=4, shuffle=False, seed=0)

    batches = list(loader)

    assert [b["i"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(isinstance(index, slice) for index in loader.sampler)
    for batch in batches:
        torch.testing.assert_close(batch["x"][:, 0], batch["i"].float())


def test_shuffled_order_is_fixed_by_seed_and_epoch():
    first, again, other_seed = (EpochBatchSampler(50, 8, True, seed) for seed in (3, 3, 4))

    order = epoch(first)

    assert order == epoch(again)
    assert order != epoch(other_seed)
    assert order != [t.tolist() for t in torch.arange(50).split(8)]  # actually shuffled
    first.set_epoch(1)
    assert epoch(first) != order
    again.set_epoch(1)
    assert epoch(again) == epoch(first)
    first.set_epoch(0)
    assert epoch(first) == order


@pytest.mark.parametrize("epoch_number", [0, 1, 5])
def test_a_shuffled_epoch_visits_every_row_exactly_once(epoch_number):
    loader = batch_loader(rows(37), batch_size=8, shuffle=True, seed=1)
    loader.sampler.set_epoch(epoch_number)

    batches = list(loader)

    seen = torch.cat([b["i"] for b in batches])
    assert sorted(seen.tolist()) == list(range(37))
    for batch in batches:  # the tensors of a batch stay aligned row by row
        torch.testing.assert_close(batch["x"][:, 1], -batch["i"].float())


def test_iterating_a_loader_leaves_the_global_rng_untouched():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    loader = batch_loader(rows(40), batch_size=7, shuffle=True, seed=0)

    for number in range(2):
        loader.sampler.set_epoch(number)
        for _ in loader:
            pass

    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (9, 3), (1, 5), (7, 1), (256, 256), (257, 256)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_batch_count_is_rows_over_batch_size_rounded_up(n, batch_size, shuffle):
    loader = batch_loader(rows(n), batch_size=batch_size, shuffle=shuffle, seed=0)

    sizes = [len(b["i"]) for b in loader]

    assert len(loader) == len(sizes) == math.ceil(n / batch_size)
    assert sizes[:-1] == [batch_size] * (len(sizes) - 1)
    assert sizes[-1] == n - batch_size * (len(sizes) - 1)


def test_tensors_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        TensorBatches({"a": torch.zeros(3), "b": torch.zeros(4)})


def shards(n: int, batch_size: int, shuffle: bool, world_size: int, epoch_number: int = 0) -> list[list[list[int]]]:
    """Each rank's batches (row numbers) of one epoch, the samplers built as each rank of a DDP run builds its own."""
    samplers = [EpochBatchSampler(n, batch_size, shuffle, 7, world_size, rank) for rank in range(world_size)]
    for sampler in samplers:
        sampler.set_epoch(epoch_number)
    return [epoch(sampler) for sampler in samplers]


@pytest.mark.parametrize(("n", "batch_size"), [(160, 32), (97, 12), (33, 16), (5, 4), (3, 1), (64, 64)])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_share_out_every_row_once_in_the_same_number_of_batches(n, batch_size, shuffle, world_size):
    for epoch_number in (0, 1):
        per_rank = shards(n, batch_size, shuffle, world_size, epoch_number)

        seen = [row for batches in per_rank for batch in batches for row in batch]
        assert sorted(seen) == list(range(n))  # no row twice, none missed: train and validation alike
        assert len({len(batches) for batches in per_rank}) == 1  # DDP steps in lockstep: equal batch counts
        assert all(0 < len(batch) <= batch_size + 1 for batches in per_rank for batch in batches)


def test_shards_follow_one_permutation_per_epoch():
    first, again, second = shards(97, 12, True, 2, 0), shards(97, 12, True, 2, 0), shards(97, 12, True, 2, 1)

    assert first == again  # every rank draws the same (seed, epoch) order, so the shards are disjoint
    assert first != second


def test_one_rank_is_the_single_process_order():
    single = EpochBatchSampler(97, 12, True, 7)
    single.set_epoch(3)

    assert shards(97, 12, True, 1, 3) == [epoch(single)]


def test_fewer_rows_than_processes_is_one_line():
    with pytest.raises(DataError, match=r"a split of 2 row\(s\) cannot give each of the 3 processes a row: use fewer"):
        EpochBatchSampler(2, 8, False, 0, num_replicas=3, rank=0)
