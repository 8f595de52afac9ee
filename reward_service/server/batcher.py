"""Dynamic batching of ERV sentence classification across all pending requests.

Runs inside the reward service process, on its asyncio event loop (plain asyncio, no grpc):
requests hand in their explanation sentences, one worker task gathers the sentences of all
waiting requests into one model batch (capped by a token budget and a short maximum wait)
and runs `classifier.predict_proba` on a worker thread, off the event loop. Also here: the
bounded queue (QueueFullError past it), dropping the work of cancelled or expired requests
before inference, and the LRU cache of sentence probabilities keyed by (model version, sentence).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from reward_service.errors import RewardServiceError


class Classifier(Protocol):
    """What the batcher needs of a model: reward_service.erv.model.ErvModel, or a fake in tests."""

    labels: Sequence[str]
    version: str
    tau: float
    top_k: int

    def predict_proba(self, sentences: list[str]) -> np.ndarray: ...  # (S, L) float32


class QueueFullError(RewardServiceError, RuntimeError):
    """The bounded queue cannot take a request's sentences now; retry after `retry_after_s`."""

    def __init__(self, queued: int, wanted: int, limit: int, retry_after_s: float):
        super().__init__(f"reward queue full: {queued} sentences waiting + {wanted} > limit {limit}")
        self.retry_after_s = retry_after_s


class _Waiter:
    """One classify() call waiting for its missing sentences: a single future, not one per sentence."""

    __slots__ = ("future", "rows", "remaining", "arrived")

    def __init__(self, future: asyncio.Future, count: int, arrived: float):
        self.future = future
        self.rows: dict[str, np.ndarray] = {}
        self.remaining = count
        self.arrived = arrived

    def deliver(self, sentence: str, row: np.ndarray) -> None:
        if self.future.done():  # cancelled or expired: nobody reads these rows
            return
        self.rows[sentence] = row
        self.remaining -= 1
        if self.remaining == 0:
            self.future.set_result(self.rows)


@dataclass
class _Pending:
    """One distinct sentence waiting for the model, and the requests waiting for its row."""

    sentence: str
    tokens: int
    arrived: float
    waiters: list[_Waiter] = field(default_factory=list)

    def alive(self) -> bool:
        return any(not w.future.done() for w in self.waiters)


class SentenceCache:
    """Bounded LRU of sentence probability rows keyed by (model version, sentence); size 0 = off."""

    def __init__(self, max_size: int):
        self.max_size = max_size
        self._rows: collections.OrderedDict[tuple[str, str], np.ndarray] = collections.OrderedDict()

    def get(self, key: tuple[str, str]) -> np.ndarray | None:
        row = self._rows.get(key)
        if row is not None:
            self._rows.move_to_end(key)
        return row

    def put(self, key: tuple[str, str], row: np.ndarray) -> None:
        if self.max_size <= 0:
            return
        self._rows[key] = row
        self._rows.move_to_end(key)
        while len(self._rows) > self.max_size:
            self._rows.popitem(last=False)

    def __len__(self) -> int:
        return len(self._rows)


def estimate_tokens(sentence: str, max_length: int) -> int:
    """Cheap token count for the batch budget: ~4 characters per word piece plus [CLS]/[SEP]."""
    return min(max_length, len(sentence) // 4 + 3)


class SentenceBatcher:
    """Classify sentences of many concurrent requests in shared model batches.

    `await classify(sentences)` returns the (S, L) probabilities in the caller's order. Repeated
    sentences (within and across pending requests) are classified once.
    """

    def __init__(
        self,
        classifier: Classifier,
        *,
        max_batch_tokens: int = 8192,
        max_wait_s: float = 0.005,
        max_queue_sentences: int = 20_000,
        cache_size: int = 100_000,
        retry_after_s: float = 0.2,
        metrics=None,
    ):
        self.classifier = classifier
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.max_queue_sentences = max_queue_sentences
        self.retry_after_s = retry_after_s
        self.cache = SentenceCache(cache_size)
        self.metrics = metrics  # reward_service.server.prometheus_metrics.RewardMetrics or None
        self.max_length = int(getattr(classifier, "max_length", 128))
        self.num_labels = len(classifier.labels)
        self._queue: collections.deque[_Pending] = collections.deque()  # arrival order
        self._by_sentence: dict[str, _Pending] = {}
        self._queued_tokens = 0
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task | None = None
        # One inference thread: ONNX Runtime parallelises inside a batch with its own threads.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="erv-infer")
        self.batches_run = 0
        self.inflight_sentences = 0  # sentences of the batch being inferred now

    @property
    def queue_depth(self) -> int:
        """Sentences waiting for the model (not counting the batch being inferred)."""
        return len(self._queue)

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="erv-batcher")

    async def stop(self) -> None:
        """Stop the worker; waiting requests get CancelledError. Idempotent."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        for entry in self._queue:
            for waiter in entry.waiters:
                waiter.future.cancel()
        self._queue.clear()
        self._by_sentence.clear()
        self._queued_tokens = 0
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def warmup(self, sentence: str = "The woman smiles warmly.") -> None:
        """One real forward pass, bypassing queue and cache (readiness means the model ran)."""
        loop = asyncio.get_running_loop()
        probs = await loop.run_in_executor(self._executor, self.classifier.predict_proba, [sentence])
        if np.asarray(probs).shape != (1, self.num_labels):
            raise RuntimeError(f"warm-up forward pass returned shape {np.asarray(probs).shape}")

    async def classify(self, sentences: Sequence[str]) -> np.ndarray:
        """(S, L) float32 sigmoid probabilities of `sentences`; raises QueueFullError when full."""
        if not sentences:
            return np.zeros((0, self.num_labels), dtype=np.float32)
        version = self.classifier.version
        rows: dict[str, np.ndarray] = {}
        misses: list[str] = []
        for sentence in dict.fromkeys(sentences):  # distinct, in order
            row = self.cache.get((version, sentence))
            if row is None:
                misses.append(sentence)
            else:
                rows[sentence] = row
        if self.metrics is not None:
            self.metrics.cache_hits.inc(len(rows))
            self.metrics.cache_misses.inc(len(misses))
        if misses:
            rows.update(zip(misses, await self._enqueue_and_wait(misses), strict=True))
        return np.stack([rows[s] for s in sentences]).astype(np.float32, copy=False)

    async def _enqueue_and_wait(self, misses: list[str]) -> list[np.ndarray]:
        new = [s for s in misses if s not in self._by_sentence]
        # All or nothing: a request is either fully queued or rejected, never half-queued.
        if len(self._queue) + len(new) > self.max_queue_sentences:
            raise QueueFullError(len(self._queue), len(new), self.max_queue_sentences, self.retry_after_s)
        now = time.monotonic()
        waiter = _Waiter(asyncio.get_running_loop().create_future(), len(misses), now)
        for sentence in misses:  # distinct
            entry = self._by_sentence.get(sentence)
            if entry is None:
                entry = _Pending(sentence, estimate_tokens(sentence, self.max_length), now)
                self._by_sentence[sentence] = entry
                self._queue.append(entry)
                self._queued_tokens += entry.tokens
            entry.waiters.append(waiter)
        self._set_depth()
        self._wakeup.set()
        # Cancellation (client gone, deadline) cancels this future; the worker then drops
        # sentences nobody waits for before they reach the model.
        rows = await waiter.future
        return [rows[s] for s in misses]

    def _set_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._queue))

    def _take_batch(self) -> list[_Pending]:
        """Pop live entries up to the token budget (at least one); drop dead ones."""
        batch: list[_Pending] = []
        tokens = 0
        while self._queue:
            entry = self._queue[0]
            if entry.alive() and batch and tokens + entry.tokens > self.max_batch_tokens:
                break
            self._queue.popleft()
            self._queued_tokens -= entry.tokens
            del self._by_sentence[entry.sentence]
            if entry.alive():
                batch.append(entry)
                tokens += entry.tokens
        self._set_depth()
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._queue:
                continue
            # Let the batch fill: until the token budget is reached or the oldest sentence has
            # waited max_wait_s (sentences that arrived during the last inference go at once).
            while self._queued_tokens < self.max_batch_tokens:
                remaining = self._queue[0].arrived + self.max_wait_s - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
                self._wakeup.clear()
            batch = self._take_batch()
            if self._queue:
                self._wakeup.set()  # leftovers form the next batch right after this one
            if not batch:
                continue
            await self._infer(loop, batch)

    async def _infer(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        started = time.monotonic()
        sentences = [entry.sentence for entry in batch]
        self.inflight_sentences = len(sentences)
        try:
            probs = await loop.run_in_executor(self._executor, self.classifier.predict_proba, sentences)
            probs = np.asarray(probs, dtype=np.float32)  # (B, L)
            if probs.shape != (len(batch), self.num_labels):
                raise RuntimeError(f"classifier returned shape {probs.shape} for {len(batch)} sentences")
        except Exception as err:  # a model failure fails these requests, not the service
            self.inflight_sentences = 0
            for entry in batch:
                for waiter in entry.waiters:
                    if not waiter.future.done():
                        waiter.future.set_exception(err)
            return
        self.batches_run += 1
        self.inflight_sentences = 0
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(batch))
            self.metrics.inference_seconds.observe(time.monotonic() - started)
            # Once per request in this batch, not per sentence: a histogram observation per sentence
            # cost more than the rest of the bookkeeping.
            for waiter in {w for entry in batch for w in entry.waiters}:
                self.metrics.queue_seconds.observe(started - waiter.arrived)
        version = self.classifier.version
        for entry, row in zip(batch, probs, strict=True):
            row = row.copy()
            row.flags.writeable = False
            self.cache.put((version, entry.sentence), row)
            for waiter in entry.waiters:
                waiter.deliver(entry.sentence, row)
