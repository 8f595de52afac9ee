"""Dynamic batching of ERV sentence classification across all pending requests.

Runs inside the reward service process, on its asyncio event loop (plain asyncio, no grpc):
requests hand in their explanation sentences, one worker task gathers the sentences of all
waiting requests into one model batch (capped by a token budget and a short maximum wait)
and runs `classifier.predict_proba` on a worker thread, off the event loop. Also here: the
queue bounded in sentences and in estimated wait (QueueFullError past either, with a retry hint
that grows with the queue; the wait is estimated from the measured sentences/s), dropping the work
of cancelled or expired requests before inference, per-sentence failure isolation (a batch that
fails is split until the sentences that fail alone are found; only their requests fail), and the
LRU cache of sentence probabilities keyed by (model version, sentence).
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

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnscorableSentenceError(RewardServiceError, ValueError):
    """This sentence fails the model on its own while other sentences of its batch were scored."""

    def __init__(self, sentence: str, cause: BaseException):
        super().__init__(f"cannot be classified ({type(cause).__name__}: {str(cause)[:200]})")
        self.sentence = sentence


# Decay per batch of the throughput estimate: about the last 10 batches count.
_RATE_DECAY = 0.9
# Extra model calls one failed batch may spend isolating its failing sentences: a poison among 512
# needs 18; a model that fails everything (slowly, perhaps) stops here and fails the rest at once.
_MAX_ISOLATION_CALLS = 64
MAX_RETRY_AFTER_S = 60.0


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
        max_queue_wait_s: float = 0.0,
        cache_size: int = 100_000,
        retry_after_s: float = 0.2,
        metrics=None,
    ):
        self.classifier = classifier
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.max_queue_sentences = max_queue_sentences
        self.max_queue_wait_s = max_queue_wait_s  # 0 = bound by sentences only
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
        # Measured throughput: decayed sums of sentences and model seconds of recent batches.
        self._rate_sentences = 0.0
        self._rate_seconds = 0.0

    @property
    def queue_depth(self) -> int:
        """Sentences waiting for the model (not counting the batch being inferred)."""
        return len(self._queue)

    @property
    def sentences_per_s(self) -> float | None:
        """Measured model throughput over the last ~10 batches; None before the first batch."""
        return self._rate_sentences / self._rate_seconds if self._rate_seconds > 0 else None

    def estimated_wait_s(self, new: int = 0) -> float | None:
        """Seconds until `new` more sentences would be classified, at the measured throughput."""
        rate = self.sentences_per_s
        return None if rate is None else (len(self._queue) + self.inflight_sentences + new) / rate

    def _admit(self, new: int) -> None:
        """Raise QueueFullError when `new` sentences exceed the sentence bound or the wait bound."""
        queued, rate = len(self._queue), self.sentences_per_s
        if queued + new > self.max_queue_sentences:
            excess_s = (queued + new - self.max_queue_sentences) / rate if rate else 0.0
            raise QueueFullError(
                f"reward queue full: {queued} sentences waiting + {new} > limit {self.max_queue_sentences}",
                self._retry_after(excess_s),
            )
        wait = self.estimated_wait_s(new)
        if self.max_queue_wait_s > 0 and wait is not None and wait > self.max_queue_wait_s:
            raise QueueFullError(
                f"reward queue full: estimated wait {wait:.1f} s for {new} more sentences "
                f"({queued} waiting, {rate:.0f} sentences/s) > max {self.max_queue_wait_s:.1f} s",
                self._retry_after(wait - self.max_queue_wait_s),
            )

    def _retry_after(self, excess_s: float) -> float:
        """Pushback: about when the queue will have drained enough; grows with the queue."""
        return min(MAX_RETRY_AFTER_S, max(self.retry_after_s, excess_s))

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
        self._admit(len(new))
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

    async def _predict(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> np.ndarray:
        """(B, L) float32 rows of the batch's sentences, on the inference thread."""
        sentences = [entry.sentence for entry in batch]
        probs = await loop.run_in_executor(self._executor, self.classifier.predict_proba, sentences)
        probs = np.asarray(probs, dtype=np.float32)  # (B, L)
        if probs.shape != (len(batch), self.num_labels):
            raise RuntimeError(f"classifier returned shape {probs.shape} for {len(batch)} sentences")
        return probs

    async def _infer(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        started = time.monotonic()
        self.inflight_sentences = len(batch)
        try:
            probs = await self._predict(loop, batch)
        except Exception as err:  # fails the sentences that fail alone, not the batch or the service
            try:
                await self._isolate(loop, batch, err)
            finally:
                self.inflight_sentences = 0
            return
        self.batches_run += 1
        self.inflight_sentences = 0
        elapsed = time.monotonic() - started
        self._rate_sentences = _RATE_DECAY * self._rate_sentences + len(batch)
        self._rate_seconds = _RATE_DECAY * self._rate_seconds + elapsed
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(batch))
            self.metrics.inference_seconds.observe(elapsed)
            # Once per request in this batch, not per sentence: a histogram observation per sentence
            # cost more than the rest of the bookkeeping.
            for waiter in {w for entry in batch for w in entry.waiters}:
                self.metrics.queue_seconds.observe(started - waiter.arrived)
        self._deliver(batch, probs)

    async def _isolate(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending], err: Exception) -> None:
        """A batch failed: split it in halves until the sentences that fail alone are found.

        Those fail their requests with UnscorableSentenceError; every other sentence is delivered.
        When no sentence succeeds (the model itself is broken) each request gets the model's error.
        A transient failure is absorbed: the halves succeed. At most _MAX_ISOLATION_CALLS extra calls.
        """
        # (entry, error, whether it failed alone); a lone batch of one proves nothing about its input.
        failed: list[tuple[_Pending, Exception, bool]] = [(batch[0], err, False)] if len(batch) == 1 else []
        failing = [batch] if len(batch) > 1 else []  # parts known to fail together: split them
        any_scored, calls = False, 0
        while failing:
            part = failing.pop()
            if calls >= _MAX_ISOLATION_CALLS:
                failed += [(entry, err, False) for entry in part]
                continue
            calls += 2
            for half in (part[: len(part) // 2], part[len(part) // 2 :]):
                half = [entry for entry in half if entry.alive()]
                if not half:
                    continue
                try:
                    probs = await self._predict(loop, half)
                except Exception as half_err:
                    if len(half) == 1:
                        failed.append((half[0], half_err, True))
                    else:
                        failing.append(half)
                    continue
                self._deliver(half, probs)
                any_scored = True
        for entry, cause, alone in failed:
            error = UnscorableSentenceError(entry.sentence, cause) if alone and any_scored else cause
            for waiter in entry.waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(error)

    def _deliver(self, batch: list[_Pending], probs: np.ndarray) -> None:
        version = self.classifier.version
        for entry, row in zip(batch, probs, strict=True):
            row = row.copy()
            row.flags.writeable = False
            self.cache.put((version, entry.sentence), row)
            for waiter in entry.waiters:
                waiter.deliver(entry.sentence, row)
