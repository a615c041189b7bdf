"""``zonal``'s per-date kernels (issue 11): the grouping of each plot's values and the block layout, against plain
numpy written out per row here."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from agricredit import coverage, quantiles, zonal
from test_zonal import _brute_quantile  # exactextract's weighted quantile written out plainly


def _groups_by_row(indptr, labels, x, keep):
    """Per label, in label order: the kept entries sorted by value (stable), the distinct values, and the number of
    entries so far, one row at a time with Python's sort (-0.0 and 0.0 already merged by the caller)."""
    entries, values, ends = [], [], []
    for label in range(len(labels)):
        row = int(np.flatnonzero(labels == label)[0])
        mine = [e for e in range(indptr[row], indptr[row + 1]) if keep[e]]
        mine.sort(key=lambda e: x[e])  # stable: ties stay in column order
        entries += mine
        values += sorted({float(x[e]) for e in mine})
        ends.append(len(entries))
    return entries, values, ends


def _layout(rng, dtype, n_rows=40):
    counts = rng.integers(0, 12, n_rows)
    counts[3] = 0  # an empty row
    counts[5] = 1  # a row of one entry
    counts[7] = 11  # a place of 4 bits
    indptr = np.r_[0, np.cumsum(counts)]
    x = rng.choice(np.array([-0.5, -1e-30, 0.0, 1e-30, 0.25, 0.5, 0.5000001, 1.0, np.nan], dtype=dtype), indptr[-1])
    x += dtype(0)
    labels = rng.permutation(n_rows)
    return indptr, labels, x, np.isfinite(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
# 40 rows, a place of 4 bits: 64 holds every key; 40 the keys of a row's own sort (value and place: 36 bits), not
# those of the block's sort (+ a label of 6 bits), which then takes the lexsort; 35 neither
@pytest.mark.parametrize("key_bits", [64, 40, 35])
@pytest.mark.parametrize("row_sort_min", [0, 10**9])  # rows sorted one by one, or the block's keys at once
def test_value_groups_match_a_sort_of_each_row(monkeypatch, dtype, key_bits, row_sort_min):
    monkeypatch.setattr(quantiles, "KEY_BITS", key_bits)
    monkeypatch.setattr(quantiles, "ROW_SORT_MIN_ENTRIES", row_sort_min)
    rng = np.random.default_rng(5)
    for _ in range(20):
        indptr, labels, x, keep = _layout(rng, dtype)
        order, first, label_ends, value = quantiles.value_groups(indptr, labels, x, keep)
        expected_entries, expected_values, expected_ends = _groups_by_row(indptr, labels, x, keep)
        assert order.tolist() == expected_entries and label_ends.tolist() == expected_ends
        assert value.dtype == dtype
        np.testing.assert_array_equal(value, x[order])
        assert value[first].tolist() == expected_values  # a run starts at each distinct value of each row
        rows = np.searchsorted(indptr, order, side="right") - 1
        starts = [i == 0 or rows[i] != rows[i - 1] or value[i] != value[i - 1] for i in range(len(order))]
        assert first.tolist() == starts


def test_value_groups_of_no_entries():
    order, first, label_ends, value = quantiles.value_groups(
        np.zeros(3, np.int64), np.array([1, 0]), np.empty(0, np.float32), np.empty(0, bool))
    assert len(order) == len(first) == len(value) == 0 and label_ends.tolist() == [0, 0]


@pytest.mark.parametrize("longest", [1, 2, 7])
def test_merge_equal_sums_each_run_from_its_first_weight_in_order(longest):
    rng = np.random.default_rng(longest)
    lengths = rng.integers(1, longest + 1, 300)  # runs of equal values, 1 to `longest` entries
    first = np.zeros(lengths.sum(), bool)
    first[np.r_[0, np.cumsum(lengths)[:-1]]] = True
    weight = rng.uniform(0, 1, len(first)) * 10.0 ** rng.integers(-20, 3, len(first))  # rounding in every sum
    value = np.cumsum(first).astype(np.float32)  # run k holds the value k
    label_ends = np.array([0, 17, 17, len(first) // 2, len(first)])
    run = np.cumsum(first) - 1
    expected = np.zeros(len(lengths))
    for i in range(len(first)):  # from 0, one by one in entry order (what a bincount does)
        expected[run[i]] += weight[i]
    expected_ends = [int(np.count_nonzero(first[:end])) for end in label_ends]
    merged, values, ends = quantiles.merge_equal(weight.copy(), value, first, label_ends)
    np.testing.assert_array_equal(merged, expected)
    np.testing.assert_array_equal(values, np.arange(1, len(lengths) + 1, dtype=np.float32))
    assert ends.tolist() == expected_ends


def test_equal_weights_are_summed_in_column_order():
    # The weights of one value are added in the row's column order, as exactextract merges them: 1 then a thousand
    # 2**-53 stays 1 in float64 (each addition rounds back), the other way round it is 1 + 1000 · 2**-53.
    tiny = 2.0**-53
    weights = np.r_[1.0, np.full(1000, tiny), 1.0, 1.0]
    values = np.r_[np.full(1001, -1.0), 0.0, 1.0].astype(np.float32)
    expected = _brute_quantile(values, weights, 0.5)  # merged weights (1, 1, 1): the median is 0 exactly
    assert expected == 0.0 and _brute_quantile(values[::-1], weights[::-1], 0.5) < -1e-14
    block = coverage.blocks_of(sp.csr_matrix(weights[None, :]))[0]
    assert quantiles.block_quantiles(block.matrix, block.rows, values, [0.5])[0, 0] == 0.0


def test_block_rows_are_in_order_of_their_first_cell_and_the_matrix_round_trips():
    rng = np.random.default_rng(8)
    dense = (rng.uniform(0, 1, (30, 50)) < 0.1) * rng.uniform(0.1, 1, (30, 50))
    dense[[4, 17]] = 0  # empty rows: last
    blocks = coverage.blocks_of(sp.csr_matrix(dense))
    assert len(blocks) == 1
    block = blocks[0]
    first = [np.flatnonzero(dense[r])[0] if dense[r].any() else 50 for r in range(30)]
    assert block.rows.tolist() == sorted(range(30), key=lambda r: (first[r], r))
    np.testing.assert_array_equal(block.matrix.toarray(), dense[block.rows][:, block.ids])
    weights = zonal.CoverageWeights(blocks, np.ones(30), 50, 1)
    restored = np.zeros((30, 50))
    restored[:, weights.cells] = weights.matrix.toarray()
    np.testing.assert_array_equal(restored, dense)


def test_row_stats_sum_each_indicator_in_column_order_and_skip_empty_ones():
    # Per plot: weights over 6 cells; values with NaN (invalid), cloud, one cell outside every tile.
    dense = np.array([[0.5, 1.0, 0.25, 0.0, 1.0, 0.75],
                      [0.0, 0.0, 1.0, 1.0, 0.0, 0.125],
                      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    values = np.array([0.2, np.nan, 0.7, np.nan, 0.9, np.nan], dtype=np.float32)
    cloud = np.array([False, True, False, False, False, True])
    inside = np.array([True, True, True, True, True, False])
    blocks = coverage.blocks_of(sp.csr_matrix(dense))
    cells = [(values[b.ids], cloud[b.ids], inside[b.ids]) for b in blocks]
    stats = zonal._row_stats(blocks, 3, cells, 0.7, (0.5,))
    valid = np.isfinite(values)
    w = dense.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(stats["valid"], w @ valid)
    np.testing.assert_array_equal(stats["weighted_sum"], w @ np.where(valid, values, 0).astype(np.float64))
    np.testing.assert_array_equal(stats["cropped"], w @ (valid & (values >= np.float32(0.7))))
    np.testing.assert_array_equal(stats["cloud"], w @ (cloud & ~valid & inside))
    np.testing.assert_array_equal(stats["covered"], w @ (valid | inside))
    assert stats["cloud"][1] == 0.0 and stats["covered"][1] == 2.0  # the cloudy cells are not in plot 1
    no_cloud = zonal._row_stats(blocks, 3, [(v, None, None) for v, _, _ in cells], 0.7, (0.5,))
    np.testing.assert_array_equal(no_cloud["cloud"], np.zeros(3))
    np.testing.assert_array_equal(no_cloud["covered"], w.sum(axis=1))
