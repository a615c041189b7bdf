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

__all__ = ["KEY_BITS", "ROW_SORT_MIN_ENTRIES", "block_quantiles", "merge_equal", "sorted_quantiles", "value_groups"]


def block_quantiles(matrix: sp.csr_matrix, labels: np.ndarray, v: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Weighted quantiles per row of a canonical CSR block whose columns hold the values ``v`` (NaN: left out).

    Returns ``len(labels) × len(qs)``: row ``labels[i]`` of the result is that of the
    matrix's row ``i``. Each row's distinct valid values come from :func:`value_groups`;
    the weights of equal values are summed in float64 in column order (as exactextract
    merges them), by :func:`merge_equal`.
    """
    x = np.take(v, matrix.indices)  # (take: several times faster than indexing with int32 indices)
    x += v.dtype.type(0)  # -0.0 → 0.0: equal values must sort together
    order, first, label_ends, value = value_groups(matrix.indptr, labels, x, np.isfinite(x))
    weight, value, label_ends = merge_equal(np.take(matrix.data, order).astype(np.float64), value, first, label_ends)
    return sorted_quantiles(np.r_[0, label_ends], weight, value, qs)


#: Bits of the packed sort keys of :func:`value_groups` (wider keys take a lexsort).
KEY_BITS = 64
#: Kept entries per row, on average, from which :func:`value_groups` sorts each row's keys on its own rather than all
#: of a block's at once (measured on a million keys: rows of 10 to 500 entries, 38 ms against 60; 5 to 50, even; 1 to
#: 10, 83 ms against 41).
ROW_SORT_MIN_ENTRIES = 32


def value_groups(indptr: np.ndarray, labels: np.ndarray, x: np.ndarray, keep: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kept entries of a CSR layout sorted by their row's label, then value, then place in the row; and where
    the runs of equal values in a row start.

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
    order
        The kept entries (indices in the layout) in that order.
    first
        Per entry of ``order``: True where a run of equal values of one row starts.
    label_ends
        Per label, the place in ``order`` after its row's last entry.
    value
        Per entry of ``order``: its value, ``x[order]``.

    float32 values take packed integer keys, decoded back once sorted (the keys are unique, so any sort gives this
    order). Rows of :data:`ROW_SORT_MIN_ENTRIES` kept entries or more on average: each row's ``(value bits, place)``
    keys sorted on its own (numpy sorts a few hundred keys in the CPU's vector units), the rows then put in the order
    of their labels. Shorter rows: one stable sort of ``(label, value bits, place)`` keys (a timsort, which finds the
    runs of a row's label the layout already holds). Other values, or keys wider than :data:`KEY_BITS`: a lexsort.
    """
    counts = np.diff(indptr)
    n_labels = len(labels)
    by_row = np.count_nonzero(keep) >= ROW_SORT_MIN_ENTRIES * n_labels
    label_bits = 0 if by_row else max(n_labels - 1, 0).bit_length()
    place_bits = max(int(counts.max(initial=0)) - 1, 0).bit_length()
    if x.dtype != np.float32 or label_bits + 32 + place_bits > KEY_BITS:
        label = np.repeat(labels, counts)
        kept = np.flatnonzero(keep)
        order = kept[np.lexsort((x[kept], label[kept]))]
        value = x[order]
        label_ends = np.searchsorted(label[order], np.arange(n_labels), side="right")
        return order, _run_starts(value, label_ends), label_ends, value
    # Sign-magnitude floats to unsigned integers in the same order: flip every bit of a negative, the sign of the rest.
    signed = x.view(np.int32)
    bits = signed >> 31
    bits |= np.int32(-2**31)
    bits ^= signed
    key = bits.view(np.uint32).astype(np.uint64)
    del bits
    key <<= np.uint64(place_bits)
    key += np.arange(len(key), dtype=np.uint64)  # + the entry, less its row's first entry below: its place in the row
    if by_row:
        key -= np.repeat(indptr[:-1].astype(np.uint64), counts)
        kept = np.flatnonzero(keep)
        key = key[kept]
        bounds = np.searchsorted(kept, indptr)  # each row's kept keys: bounds[r] to bounds[r + 1]
        for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            if end - start > 1:
                key[start:end].sort()
        # The rows' sorted keys in the order of their labels.
        row_of = np.empty(n_labels, dtype=np.int64)
        row_of[labels] = np.arange(n_labels)
        lengths = np.diff(bounds)[row_of]
        label_ends = np.cumsum(lengths)
        key = key[np.repeat(bounds[:-1][row_of] - (label_ends - lengths), lengths) + np.arange(len(key))]
        starts = np.repeat(indptr[:-1][row_of], lengths)  # each key's row's first entry
    else:
        # + the row's label above the value, as label·2**(32 + place bits) − the row's first entry (modulo 2**64)
        label_shift = np.uint64(32 + place_bits)
        key += np.repeat((labels.astype(np.uint64) << label_shift) - indptr[:-1].astype(np.uint64), counts)
        key = key[keep]
        key.sort(kind="stable")
        # Where each label's keys end: after its largest possible key.
        label_ends = np.searchsorted(key, np.arange(n_labels, dtype=np.uint64) << label_shift
                                     | np.uint64((1 << int(label_shift)) - 1), side="right")
        first_entry = np.empty(n_labels, dtype=np.int64)  # each label's row's first entry
        first_entry[labels] = indptr[:-1]
        starts = np.repeat(first_entry, np.diff(label_ends, prepend=0))
    # (The place part is far below 2**63: viewed as int64, no copy.)
    order = (key & np.uint64((1 << place_bits) - 1)).view(np.int64)
    order += starts
    key >>= np.uint64(place_bits)  # (label, value bits): runs start where either changes, and at each row's start
    first = _run_starts(key, label_ends)
    bits = key.astype(np.uint32)  # the values' bits (the label's cut off), back from the order-preserving form:
    del key
    flip = bits >> np.uint32(31)  # 1 for the non-negative (flip the sign), 0 for the negative (flip every bit)
    flip -= np.uint32(1)
    flip |= np.uint32(0x80000000)
    bits ^= flip
    return order, first, label_ends, bits.view(np.float32)


def _run_starts(ordered: np.ndarray, label_ends: np.ndarray) -> np.ndarray:
    """Where runs of equal values start among sorted entries (their values or keys ``ordered``): the first entry,
    where the value changes and where a label's entries start (after the ``label_ends``)."""
    first = np.empty(len(ordered), dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    first[label_ends[label_ends < len(first)]] = True
    return first


def merge_equal(weight: np.ndarray, value: np.ndarray, first: np.ndarray, label_ends: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge the runs of equal values of :func:`value_groups`: each run's value, its weights summed, and the
    ``label_ends`` counted in runs.

    ``weight`` (float64, per sorted entry) is summed in place: a run's weights one by one in entry order (the
    row's column order), from its first (as a bincount from 0 would: the weights are positive).
    """
    if first.all():  # no equal values in any row: nothing to merge
        return weight, value, label_ends
    later = np.flatnonzero(~first)  # the entries after the first of their run (few)
    # Each one's run's first entry: its predecessor where that starts the run, else the same as the entry before.
    head = np.where(first[later - 1], later - 1, 0)
    np.maximum.accumulate(head, out=head)
    np.add.at(weight, head, weight[later])  # in the order of `later`: the column order within each run
    return weight[first], value[first], label_ends - np.searchsorted(later, label_ends)


def sorted_quantiles(indptr: np.ndarray, w: np.ndarray, x: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """exactextract's weighted quantiles per row: row ``r`` holds the distinct values ``x[indptr[r]:indptr[r + 1]]``,
    ascending, with the weights ``w`` (float64). The values enter the arithmetic in float64 (converted as they
    are taken: only the few each quantile needs)."""
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
        result = x[np.where(right == first, first, last)].astype(np.float64)
        mid = np.flatnonzero((right > first) & (right <= last))
        r_i, l_i = right[mid], right[mid] - 1
        s_r, s_l = s_at(r_i, mid), s_at(l_i, mid)
        x_l = x[l_i].astype(np.float64)
        result[mid] = x_l + (target[mid] - s_l) * (x[r_i].astype(np.float64) - x_l) / (s_r - s_l)
        out[rows, k] = result
    return out
