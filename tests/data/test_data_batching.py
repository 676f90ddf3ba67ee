"""Training batches by length: every row at most once per epoch, less padding than random batches, random order."""

from __future__ import annotations

import random

import pytest

from kolm.data.batching import batch_plan, padding_share


def test_padding_share_by_hand():
    # one batch of lengths 1 and 3: 2 x 3 positions computed, 4 real -> 1/3 padding
    assert padding_share([1, 3], [[0, 1]]) == pytest.approx(1 / 3)
    # two batches of equal lengths: no padding
    assert padding_share([2, 2, 5, 5], [[0, 1], [2, 3]]) == 0.0
    # [1, 5] and [2, 4]: (10 + 8) computed, 12 real -> 6/18
    assert padding_share([1, 5, 2, 4], [[0, 1], [2, 3]]) == pytest.approx(6 / 18)


@pytest.mark.parametrize("by_length", [False, True])
def test_plan_uses_each_row_once_in_full_batches(by_length):
    lengths = [random.Random(i).randint(1, 120) for i in range(1003)]
    plan = batch_plan(lengths, 16, random.Random(0), by_length=by_length)
    seen = [i for b in plan for i in b]
    assert len(plan) == 1003 // 16 and all(len(b) == 16 for b in plan)  # the last partial batch is dropped
    assert len(seen) == len(set(seen)) and set(seen) <= set(range(1003))
    assert plan == batch_plan(lengths, 16, random.Random(0), by_length=by_length)  # seeded: reproducible


def test_grouping_by_length_cuts_padding_and_keeps_the_order_random():
    rng = random.Random(1)
    lengths = [rng.choice([rng.randint(3, 20), rng.randint(60, 128)]) for _ in range(4000)]  # short and long reviews
    grouped = batch_plan(lengths, 32, random.Random(0), by_length=True)
    shuffled = batch_plan(lengths, 32, random.Random(0), by_length=False)
    assert padding_share(lengths, grouped) < 0.1 < 0.4 < padding_share(lengths, shuffled)
    longest = [max(lengths[i] for i in b) for b in grouped]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)  # not a length curriculum


def test_a_plan_smaller_than_one_batch_is_one_batch():
    plan = batch_plan([4, 2, 7], 8, random.Random(0), by_length=True)
    assert len(plan) == 1 and sorted(plan[0]) == [0, 1, 2]
