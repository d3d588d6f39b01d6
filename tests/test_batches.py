"""``EpochBatchSampler``, ``TensorBatches`` and ``batch_loader``: whole batches in a (seed, epoch) order."""

from __future__ import annotations

import math

import pytest
import torch

from ml_tabular.data.batches import EpochBatchSampler, TensorBatches, batch_loader


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
