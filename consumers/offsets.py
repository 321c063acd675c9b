"""Offset tracking and commit rules: the only module that decides what offset is committed.

Rules (in the order they are applied):

1. Auto-commit is off (`enable.auto.commit=false`, `enable.auto.offset.store=false`); nothing
   but `OffsetBook.commit` ever commits.
2. A record is *tracked* when the poll loop hands it to the dispatcher, and *done* when its
   outcome is durable: its effect committed in PostgreSQL, or its copy confirmed by the broker
   on a retry tier or the DLQ (the producer's delivery report), or it was a duplicate.
3. The committable offset of a partition is the lowest tracked offset that is not done, or
   one past the highest tracked offset when everything is done (Kafka's "next offset to
   read"). Records finish out of order under concurrency; the watermark never passes an
   unfinished one, so a crash redelivers it (and dedup absorbs what was already applied).
4. A partition is committed only while this consumer owns it. On revocation the book first
   commits what is done (after a bounded wait for in-flight work), then forgets the
   partition; a late completion for a forgotten partition is ignored, so nothing is ever
   committed for a partition that was reassigned to another consumer.
5. Commits are periodic (`COMMIT_INTERVAL_S`) from the poll thread, and synchronous on
   revocation and shutdown. A failed commit is logged and retried on the next tick: it only
   widens the redelivery window, which dedup covers.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

TopicPartitionKey = tuple[str, int]


@dataclass(slots=True)
class PartitionOffsets:
    """In-flight bookkeeping of one partition. Offsets are tracked in increasing order."""

    unfinished: set[int] = field(default_factory=set)
    heap: list[int] = field(default_factory=list)  # min-heap over `unfinished` (lazy deletes)
    next_offset: int | None = None  # one past the highest offset tracked
    committed: int | None = None  # last offset committed to the broker

    def track(self, offset: int) -> None:
        if offset not in self.unfinished:
            self.unfinished.add(offset)
            heapq.heappush(self.heap, offset)
        if self.next_offset is None or offset >= self.next_offset:
            self.next_offset = offset + 1

    def mark_done(self, offset: int) -> None:
        # An offset not tracked any more (a second copy finishing after the first) is
        # ignored: an offset is done once *any* of its copies has a durable outcome.
        self.unfinished.discard(offset)
        while self.heap and self.heap[0] not in self.unfinished:
            heapq.heappop(self.heap)

    def watermark(self) -> int | None:
        """The offset to commit: the lowest unfinished one, or next_offset when all are done."""
        if self.heap:
            return self.heap[0]
        return self.next_offset

    @property
    def in_flight(self) -> int:
        return len(self.unfinished)


class OffsetBook:
    """Thread-safe offsets of every partition a listener owns.

    Workers call `mark_done` from any thread; the poll thread calls everything else.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partitions: dict[TopicPartitionKey, PartitionOffsets] = {}
        self._changed = threading.Condition(self._lock)

    def assign(self, partitions: Iterable[TopicPartitionKey]) -> None:
        with self._lock:
            for tp in partitions:
                self._partitions.setdefault(tp, PartitionOffsets())

    def track(self, tp: TopicPartitionKey, offset: int) -> None:
        self.track_all([(tp, offset)])

    def track_all(self, records: Iterable[tuple[TopicPartitionKey, int]]) -> None:
        """Track many offsets (a fetched batch, in order) under one lock."""
        with self._lock:
            partitions = self._partitions
            for tp, offset in records:
                partition = partitions.get(tp)
                if partition is None:
                    partition = partitions[tp] = PartitionOffsets()
                partition.track(offset)

    def mark_done(self, tp: TopicPartitionKey, offset: int) -> bool:
        """Record a finished offset; False when the partition is no longer ours (rule 4)."""
        return self.mark_done_all([(tp, offset)]) == 1

    def mark_done_all(self, records: Iterable[tuple[TopicPartitionKey, int]]) -> int:
        """Record many finished offsets under one lock; how many were still ours."""
        ours = 0
        with self._lock:
            for tp, offset in records:
                partition = self._partitions.get(tp)
                if partition is not None:
                    partition.mark_done(offset)
                    ours += 1
            self._changed.notify_all()
        return ours

    def to_commit(self) -> dict[TopicPartitionKey, int]:
        """Watermarks that moved since the last commit."""
        with self._lock:
            result = {}
            for tp, partition in self._partitions.items():
                mark = partition.watermark()
                if mark is not None and mark != partition.committed:
                    result[tp] = mark
            return result

    def committed(self, offsets: dict[TopicPartitionKey, int]) -> None:
        with self._lock:
            for tp, offset in offsets.items():
                if tp in self._partitions:
                    self._partitions[tp].committed = offset

    def committed_positions(self) -> dict[TopicPartitionKey, int | None]:
        """The committed offset of every owned partition (None: nothing known yet)."""
        with self._lock:
            return {tp: p.committed for tp, p in self._partitions.items()}

    def wait_idle(self, partitions: Iterable[TopicPartitionKey], timeout: float) -> bool:
        """Block until the partitions have nothing in flight, or the timeout passes."""
        wanted = list(partitions)
        with self._lock:
            return self._changed.wait_for(
                lambda: all(
                    self._partitions.get(tp) is None or not self._partitions[tp].unfinished
                    for tp in wanted
                ),
                timeout=timeout,
            )

    def wait_below(self, limit: int, timeout: float) -> bool:
        """Block until fewer than `limit` records are in flight, or the timeout passes."""
        with self._lock:
            return self._changed.wait_for(
                lambda: sum(p.in_flight for p in self._partitions.values()) < limit,
                timeout=timeout,
            )

    def revoke(self, partitions: Iterable[TopicPartitionKey]) -> None:
        with self._lock:
            for tp in partitions:
                self._partitions.pop(tp, None)

    def owns(self, tp: TopicPartitionKey) -> bool:
        with self._lock:
            return tp in self._partitions

    def in_flight(self) -> int:
        with self._lock:
            return sum(p.in_flight for p in self._partitions.values())

    def owned(self) -> list[TopicPartitionKey]:
        with self._lock:
            return list(self._partitions)
