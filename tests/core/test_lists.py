"""as_lists: rows as list[list[float]] with the cyclic collector paused, and restored after."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from embedguard.core._lists import as_lists

ROWS = np.random.default_rng(3).standard_normal((20_000, 16)).astype(np.float32)


def collections() -> int:
    return sum(generation["collections"] for generation in gc.get_stats())


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_rows_are_tolists_own() -> None:
    assert as_lists(ROWS) == ROWS.tolist()
    assert as_lists(ROWS[:0]) == []


def test_no_collection_runs_while_the_rows_are_made_and_the_collector_is_back_after() -> None:
    before = collections()
    ROWS.tolist()  # 20,000 new lists: the collector runs several times
    assert collections() > before
    before = collections()
    as_lists(ROWS)
    assert collections() == before
    assert gc.isenabled()


def test_a_collector_the_program_turned_off_stays_off() -> None:
    gc.disable()
    as_lists(ROWS)
    assert not gc.isenabled()


def test_an_error_turns_the_collector_back_on() -> None:
    class Broken(np.ndarray):
        def tolist(self) -> list[object]:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        as_lists(ROWS.view(Broken))
    assert gc.isenabled()


def test_conversions_on_many_threads_share_one_pause() -> None:
    results: list[bool] = []

    def convert() -> None:
        results.append(as_lists(ROWS[:2000]) == ROWS[:2000].tolist())

    threads = [threading.Thread(target=convert) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 8
    assert gc.isenabled()
