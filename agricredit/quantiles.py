"""Exact coverage-weighted quantiles of the rows of a sparse block of weights: the kernels of
:mod:`agricredit.zonal` (exactextract's definition of a weighted quantile, see that module's docstring).

A block is a canonical CSR matrix (rows: plots, columns: cells, data: coverage weights) whose columns hold one value
each; a row's quantiles are computed over its distinct valid values, the weights of equal values summed in column
order as exactextract merges them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["KEY_BITS", "block_quantiles", "sorted_quantiles", "value_groups"]


def block_quantiles(matrix: sp.csr_matrix, labels: np.ndarray, v: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Weighted quantiles per row of a canonical CSR block whose columns hold the values ``v`` (NaN: left out).

    Returns ``len(labels) × len(qs)``: row ``labels[i]`` of the result is that of the
    matrix's row ``i``. Each row's distinct valid values come from :func:`value_groups`;
    the weights of equal values are summed in float64 in column order (as exactextract
    merges them).
    """
    x = v[matrix.indices] + v.dtype.type(0)  # -0.0 → 0.0: equal values must sort together
    entry, group, group_label, group_value = value_groups(matrix.indptr, labels, x, np.isfinite(x))
    # bincount adds each group's weights one by one in entry order (the row's column order), from 0.
    weights = np.bincount(group, weights=matrix.data[entry], minlength=len(group_label))
    ends = np.searchsorted(group_label, np.arange(len(labels)), side="right")
    return sorted_quantiles(np.r_[0, ends], weights, group_value.astype(np.float64), qs)


#: Bits of the packed sort keys of :func:`value_groups` (wider keys take a lexsort).
KEY_BITS = 64


def value_groups(indptr: np.ndarray, labels: np.ndarray, x: np.ndarray, keep: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kept entries of a CSR layout sorted by their row's label, then value, then place in the row; and the
    groups of equal values in a row.

    Parameters
    ----------
    indptr
        The layout's row pointers.
    labels
        A permutation of the rows' numbers: the order of the rows.
    x, keep
        Per entry: its value, and whether it takes part.

    Returns
    -------
    entry, group
        Of each kept entry in that order: its index in the layout, and the number of its group.
    group_label, group_value
        Of each group: its row's label and its value (both ascending within a row).

    float32 values take one sort of packed ``(label, value bits, place)`` integer
    keys (numpy's vectorised integer sort: several times faster than an argsort),
    decoded back; other values, or keys wider than :data:`KEY_BITS`, a lexsort.
    """
    counts = np.diff(indptr)
    label_bits = max(len(labels) - 1, 0).bit_length()
    place_bits = max(int(counts.max(initial=0)) - 1, 0).bit_length()
    if x.dtype != np.float32 or label_bits + 32 + place_bits > KEY_BITS:
        label = np.repeat(labels, counts)
        kept = np.flatnonzero(keep)
        entry = kept[np.lexsort((x[kept], label[kept]))]
        label, value = label[entry], x[entry]
        first = np.ones(len(entry), dtype=bool)
        np.logical_or(label[1:] != label[:-1], value[1:] != value[:-1], out=first[1:])
        return entry, np.cumsum(first) - 1, label[first], value[first]
    # Sign-magnitude floats to unsigned integers in the same order: flip every bit of a negative, the sign of the rest.
    signed = x.view(np.int32)
    bits = signed >> 31
    bits |= np.int32(-2**31)
    bits ^= signed
    key = bits.view(np.uint32).astype(np.uint64)
    del bits
    key <<= np.uint64(place_bits)
    # | the row's label above the value, the entry's place in its row below it.
    key |= np.repeat(labels.astype(np.uint64) << np.uint64(32 + place_bits), counts)
    key += np.arange(len(key), dtype=np.uint64)
    key -= np.repeat(indptr[:-1].astype(np.uint64), counts)
    key = key[keep]
    key.sort()
    starts = np.empty(len(labels), dtype=np.int64)  # each label's row's first entry
    starts[labels] = indptr[:-1]
    # (The label and place parts are far below 2**63: viewed as int64, no copy.)
    entry = starts[(key >> np.uint64(32 + place_bits)).view(np.int64)]
    entry += (key & np.uint64((1 << place_bits) - 1)).view(np.int64)
    key >>= np.uint64(place_bits)  # (label, value bits)
    first = np.ones(len(key), dtype=bool)
    np.not_equal(key[1:], key[:-1], out=first[1:])
    group = np.cumsum(first)
    group -= 1
    key = key[first]
    bits = key.astype(np.uint32)  # the value's bits, back from the order-preserving form
    bits ^= np.where(bits >> np.uint32(31), np.uint32(0x80000000), np.uint32(0xFFFFFFFF))
    return entry, group, (key >> np.uint64(32)).view(np.int64), bits.view(np.float32)


def sorted_quantiles(indptr: np.ndarray, w: np.ndarray, x: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """exactextract's weighted quantiles per row: row ``r`` holds the distinct values ``x[indptr[r]:indptr[r + 1]]``,
    ascending, with the weights ``w`` (float64)."""
    out = np.full((len(indptr) - 1, len(qs)), np.nan)
    counts = np.diff(indptr)
    rows = np.flatnonzero(counts)
    if len(rows) == 0:
        return out
    first, last = indptr[rows], indptr[rows + 1] - 1
    cum = np.cumsum(w)
    offset = cum[first] - w[first]
    total = cum[last] - offset
    n_minus_1 = (counts[rows] - 1).astype(np.float64)

    def s_at(i, r):  # exactextract's s_i at index i of row r (an index into `rows`): i·w_i + (n−1)·S_i
        return (i - first[r]) * w[i] + n_minus_1[r] * (cum[i] - w[i] - offset[r])

    rr = np.arange(len(rows))
    for k, q in enumerate(qs):
        target = q * total * n_minus_1
        # s_i/(n−1) lies between the cumulative weights before and after i, so the first
        # s_i > target is at j or j+1, j the first index whose cumulative weight exceeds q·total.
        j = np.searchsorted(cum, offset + q * total, side="right")
        j = np.clip(j, first, last + 1)
        jj = np.minimum(j, last)
        right = np.where((j <= last) & (s_at(jj, rr) > target), j, j + 1)
        right = np.minimum(right, last + 1)
        result = x[np.where(right == first, first, last)]
        mid = np.flatnonzero((right > first) & (right <= last))
        r_i, l_i = right[mid], right[mid] - 1
        s_r, s_l = s_at(r_i, mid), s_at(l_i, mid)
        x_l = x[l_i]
        result[mid] = x_l + (target[mid] - s_l) * (x[r_i] - x_l) / (s_r - s_l)
        out[rows, k] = result
    return out
