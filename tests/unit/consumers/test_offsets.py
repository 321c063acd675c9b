"""The commit watermark never passes an unfinished offset (offsets.py rules 2-4)."""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.offsets import OffsetBook, PartitionOffsets

TP = ("orders", 0)


@pytest.fixture
def book() -> OffsetBook:
    """A book with TP assigned and nothing tracked yet."""
    book = OffsetBook()
    book.assign([TP])
    return book


def test_watermark_waits_for_the_lowest_unfinished_offset() -> None:
    p = PartitionOffsets()
    for offset in (10, 11, 12, 13):
        p.track(offset)
    p.mark_done(12)
    p.mark_done(13)
    assert p.watermark() == 10  # 10 and 11 still running
    p.mark_done(10)
    assert p.watermark() == 11
    p.mark_done(11)
    assert p.watermark() == 14  # all done: the next offset to read


def test_nothing_tracked_means_nothing_to_commit(book: OffsetBook) -> None:
    assert book.to_commit() == {}


def test_to_commit_reports_only_moved_watermarks(book: OffsetBook) -> None:
    book.track(TP, 5)
    book.mark_done(TP, 5)
    assert book.to_commit() == {TP: 6}
    book.committed({TP: 6})
    assert book.to_commit() == {}


def test_completion_for_a_revoked_partition_is_ignored(book: OffsetBook) -> None:
    book.track(TP, 1)
    book.revoke([TP])
    assert book.mark_done(TP, 1) is False
    assert book.to_commit() == {}


def test_late_completion_of_an_old_copy_after_reassignment_is_harmless(book: OffsetBook) -> None:
    book.track(TP, 7)
    book.revoke([TP])
    book.assign([TP])
    book.track(TP, 7)  # redelivered to us
    book.mark_done(TP, 7)  # either copy finishing means offset 7 has a durable outcome
    book.mark_done(TP, 7)  # the other copy finishing later changes nothing
    assert book.to_commit() == {TP: 8}


def test_wait_idle_returns_when_the_partition_drains(book: OffsetBook) -> None:
    book.track(TP, 1)
    threading.Timer(0.05, book.mark_done, args=(TP, 1)).start()
    assert book.wait_idle([TP], timeout=2) is True
    book.track(TP, 2)
    assert book.wait_idle([TP], timeout=0.05) is False


@given(
    st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=200, unique=True),
    st.randoms(),
)
def test_watermark_is_always_the_lowest_unfinished(offsets: list[int], rnd: random.Random) -> None:
    offsets.sort()
    p = PartitionOffsets()
    for offset in offsets:
        p.track(offset)
    unfinished = set(offsets)
    order = offsets[:]
    rnd.shuffle(order)
    for offset in order:
        p.mark_done(offset)
        unfinished.discard(offset)
        expected = min(unfinished) if unfinished else offsets[-1] + 1
        assert p.watermark() == expected


def test_track_all_tracks_a_fetched_batch_over_several_partitions() -> None:
    other = ("orders", 1)
    book = OffsetBook()
    book.assign([TP])  # `other` is not assigned yet: tracking makes it known, as track does
    book.track_all([(TP, 3), (other, 10), (TP, 4), (other, 11)])
    assert book.in_flight() == 4
    book.mark_done(TP, 4)
    book.mark_done(other, 10)
    assert book.to_commit() == {TP: 3, other: 11}  # TP waits at 3, still running
    book.mark_done(TP, 3)
    assert book.to_commit() == {TP: 5, other: 11}


def test_mark_done_all_counts_what_is_still_ours() -> None:
    gone = ("orders", 9)
    book = OffsetBook()
    book.assign([TP, gone])
    book.track_all([(TP, 1), (TP, 2), (gone, 5)])
    book.revoke([gone])
    assert book.mark_done_all([(TP, 2), (gone, 5), (TP, 1)]) == 2
    assert book.to_commit() == {TP: 3}
