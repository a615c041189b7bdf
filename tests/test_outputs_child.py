"""A job in a forked child process (:func:`agricredit.outputs.in_child_process`): its result, its error, its end."""

from __future__ import annotations

import os
import time

import pytest

from agricredit.errors import OutputError
from agricredit.outputs import in_child_process


@pytest.fixture(params=["fork", "no fork"])
def where(request, monkeypatch):
    if request.param == "no fork":
        monkeypatch.delattr("os.fork")
    return request.param


def test_the_result_comes_back_from_another_process(where):
    with in_child_process(lambda: (os.getpid(), {"rows": [1.5, None, "村"]})) as result:
        pid, value = result()
    assert value == {"rows": [1.5, None, "村"]}
    assert (pid != os.getpid()) == (where == "fork")


def test_the_jobs_error_is_raised_when_waited_for(where):
    def job():
        raise OutputError("cannot write here: No space left on device", path="out/audit.jsonl")

    with in_child_process(job) as result:
        with pytest.raises(OutputError, match="out/audit.jsonl: cannot write here: No space left on device"):
            result()


def test_leaving_the_block_without_waiting_ends_the_child(tmp_path):
    started = tmp_path / "pid"

    def job():
        started.write_text(str(os.getpid()))
        time.sleep(60)

    begin = time.monotonic()
    with pytest.raises(KeyError):
        with in_child_process(job):
            while not started.exists() or not started.read_text():
                time.sleep(0.01)
            raise KeyError("the parent failed")
    assert time.monotonic() - begin < 30
    with pytest.raises(ProcessLookupError):  # ended and reaped
        os.kill(int(started.read_text()), 0)
