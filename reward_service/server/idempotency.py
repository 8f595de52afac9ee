"""The idempotency cache of the reward service: request_id -> the (running or finished) scoring task.

Runs in the reward service process on its event loop (plain asyncio). Bounded three ways: entries,
seconds (ttl) and bytes (an estimate of the finished results it keeps, which is what grows: a
return_sentences result holds every sentence of the request). A task that fails or is cancelled
leaves the cache the moment it ends, so a rejected request's content is never kept. Expired
entries are dropped by a timer, not only when the next request arrives.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from dataclasses import dataclass

# Rough CPython sizes (bytes) of the objects a CompletionResult holds besides its strings: the
# dataclass and its floats and ints, a (sentence, labels) pair and its labels tuple.
_RESULT_OVERHEAD = 200
_COMPLETION_OVERHEAD = 400
_SENTENCE_OVERHEAD = 150


def result_nbytes(result) -> int:
    """Estimated memory of a ScoreResult: its strings (sys.getsizeof, exact) plus object overheads."""
    total = _RESULT_OVERHEAD + sys.getsizeof(result.request_id)
    for score in result.scores:
        total += _COMPLETION_OVERHEAD + sys.getsizeof(score.id) + sys.getsizeof(score.predicted)
        for text, _labels in score.sentences:
            total += _SENTENCE_OVERHEAD + sys.getsizeof(text)
    return total


@dataclass
class CacheEntry:
    fingerprint: str
    task: asyncio.Task
    expires: float
    waiters: int = 0
    nbytes: int = 0  # counted once the task succeeded


class IdempotencyCache:
    """LRU of CacheEntry by request_id, bounded by max_entries, ttl_s and max_bytes (0 bytes = no byte bound)."""

    def __init__(self, max_entries: int, ttl_s: float, max_bytes: int):
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: collections.OrderedDict[str, CacheEntry] = collections.OrderedDict()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def get(self, request_id: str) -> CacheEntry | None:
        self._expire()
        return self._entries.get(request_id)

    def add(self, request_id: str, fingerprint: str, task: asyncio.Task) -> CacheEntry:
        """Cache `task` under request_id; it leaves again if it fails, or when bounds push it out."""
        self.remove(request_id)
        entry = CacheEntry(fingerprint, task, time.monotonic() + self.ttl_s)
        self._entries[request_id] = entry
        task.add_done_callback(lambda t: self._finished(request_id, entry))
        self._evict()
        self._schedule_expiry()
        return entry

    def remove(self, request_id: str, entry: CacheEntry | None = None) -> None:
        """Drop request_id (only if it still maps to `entry`, when given)."""
        current = self._entries.get(request_id)
        if current is not None and (entry is None or current is entry):
            del self._entries[request_id]
            self.nbytes -= current.nbytes

    def _finished(self, request_id: str, entry: CacheEntry) -> None:
        task = entry.task
        if task.cancelled() or task.exception() is not None:
            self.remove(request_id, entry)  # failed attempts are neither replayed nor kept
            return
        if self._entries.get(request_id) is entry:
            entry.nbytes = result_nbytes(task.result())
            self.nbytes += entry.nbytes
            self._evict()

    def _evict(self) -> None:
        while self._entries and (
            len(self._entries) > self.max_entries or (self.max_bytes and self.nbytes > self.max_bytes)
        ):
            _, oldest = self._entries.popitem(last=False)
            self.nbytes -= oldest.nbytes

    def _expire(self) -> None:
        now = time.monotonic()
        while self._entries and next(iter(self._entries.values())).expires < now:
            _, oldest = self._entries.popitem(last=False)
            self.nbytes -= oldest.nbytes

    def _schedule_expiry(self) -> None:
        if self._timer is not None or not self._entries:
            return
        delay = max(0.0, next(iter(self._entries.values())).expires - time.monotonic()) + 0.01

        def fire() -> None:
            self._timer = None
            self._expire()
            self._schedule_expiry()

        self._timer = asyncio.get_running_loop().call_later(delay, fire)
