"""The personal-data guard's byte pass against plain per-run versions written here."""

import random

import numpy as np
import pandas as pd
import pytest

from agricredit.privacy import PersonalDataGuard, _is_national_id, _runs

BORROWERS = pd.DataFrame({"national_id": ["11010519491231002X", "440524188001010014"], "phone": ["13800138000", "86 139 0000 1111"],
                          "name": ["张三", "李四"], "source_row": [2, 3]})


def _plain_runs(mask):
    starts, ends, inside = [], [], False
    for index, value in enumerate(list(mask) + [False]):
        if value and not inside:
            starts.append(index)
        if not value and inside:
            ends.append(index)
        inside = bool(value)
    return starts, ends


@pytest.mark.parametrize("seed", range(6))
def test_runs_are_the_runs_found_one_by_one(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random(500) < [0.05, 0.5, 0.95, 0.0, 1.0, 0.3][seed]
    starts, ends = _runs(mask)
    assert (starts.tolist(), ends.tolist()) == _plain_runs(mask)


def _plain_digit_candidate(guard, data):
    """The digit part of the byte pass, run by run: every run of 11 digits or more, with its x/X."""
    starts, ends = _plain_runs([48 <= b <= 57 for b in data])
    for start, end in zip(starts, ends):
        if end - start < 11:
            continue
        digits = data[start:end + (end < len(data) and data[end] in b"xX")].lower()
        if digits in guard._candidate_keys or (len(digits) == 18 and _is_national_id(digits.decode())):
            return True
    return False


def _noise(rng):
    """Text with digit runs of every length from 1 to 25, some followed by x or X, and no other finding."""
    parts = []
    for _ in range(40):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25)))
        parts.append(digits + rng.choice(["", "x", "X", ".", ",", " ", '"']))
    return ",".join(parts)


@pytest.mark.parametrize("planted", [None, "11010519491231002X", "11010519491231002x", "440524188001010014",
                                     "13800138000", "8613800138000", "8613900001111", "13900001111",
                                     "110105194912310011", "1101051949123100", "138001380001", "013800138000"])
def test_digit_byte_pass_finds_what_the_run_by_run_pass_finds(planted):
    guard = PersonalDataGuard.from_borrowers(BORROWERS)
    rng = random.Random(str(planted))
    for _ in range(30):
        text = _noise(rng)
        if planted is not None:
            at = rng.randint(0, len(text))
            text = text[:at] + "," + planted + "," + text[at:]
        data = text.encode()
        assert guard._candidates(data) == (_plain_digit_candidate(guard, data) or "张三" in text or "李四" in text)
