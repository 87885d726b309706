"""pollstr/collector.py: a started process freezes what it loaded and collects its young
generation less often, and reference cycles made afterwards are still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from django.test import override_settings

from pollstr import collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """Python's own collector for the test (nothing frozen, the default thresholds);
    afterwards the process's thresholds as they were, and nothing frozen."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.mark.usefixtures("restored_collector")
def test_settling_freezes_what_is_loaded_and_raises_the_young_threshold() -> None:
    with override_settings(GC_THRESHOLD=12_345):
        assert collector.settle() is True
    assert gc.get_threshold() == (12_345, 10, 10)
    # Django and the apps, loaded by now, are out of the collector's walks.
    assert gc.get_freeze_count() > 10_000


@pytest.mark.usefixtures("restored_collector")
def test_a_cycle_made_after_settling_is_still_freed() -> None:
    with override_settings(GC_THRESHOLD=12_345):
        collector.settle()
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    assert gone() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()
    assert gone() is None


@pytest.mark.usefixtures("restored_collector")
def test_a_threshold_of_zero_leaves_the_collector_alone() -> None:
    with override_settings(GC_THRESHOLD=0):
        assert collector.settle() is False
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
