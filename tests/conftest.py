"""Suite-wide guard: the tests never write into the repository (issue 16 §4).

Every test writes into ``tmp_path``; a test that rewrites a committed file (or
leaves a new one behind) would pass on the second run and leave the checkout
modified. The session fixture below records ``git status --porcelain`` before
the first test and fails the run if it differs after the last one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


def git_status(root: Path) -> str | None:
    """``git status --porcelain`` of ``root`` (untracked files included), or None outside a git checkout."""
    if shutil.which("git") is None:
        return None
    result = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"],
                            capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else None


@pytest.fixture(scope="session", autouse=True)
def repository_left_unchanged():
    """Fail the run if the tests changed, added or removed a file of the repository."""
    before = git_status(REPOSITORY)
    yield
    if before is None:
        return
    after = git_status(REPOSITORY)
    if after != before:
        changed = sorted(set(after.splitlines()) ^ set(before.splitlines()))
        pytest.fail("the tests changed the repository (git status --porcelain):\n" + "\n".join(changed), pytrace=False)
