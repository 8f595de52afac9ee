"""Transport-independent core of the reward service: validate, deduplicate, batch, assemble.

Runs in the reward service process on its event loop; the gRPC servicer and the FastAPI app
are thin adapters around one RewardScorer. A request's explanation sentences go through the
shared SentenceBatcher; per-completion rewards are assembled from their sentences' rows with
`reward.score_from_probs`. Idempotency: a request_id seen before (bounded, time-limited cache)
returns the same result, and joins the computation if it is still running.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import time
from dataclasses import dataclass

from reward_service.core import reward
from reward_service.core.labels import UNKNOWN, normalize
from reward_service.core.reward import Completion
from reward_service.errors import RewardServiceError
from reward_service.server.batcher import SentenceBatcher

MAX_ID_CHARS = 256
MAX_REQUEST_ID_CHARS = 128


@dataclass(frozen=True)
class ScoreRequestData:
    request_id: str
    completions: tuple[Completion, ...]
    return_sentences: bool = False
    timeout_s: float | None = None  # server-side budget of this request; None = none

    def fingerprint(self) -> str:
        """Content hash: a reused request_id must come with exactly this content."""
        digest = hashlib.sha256(b"1" if self.return_sentences else b"0")
        for c in self.completions:
            for part in (c.id, c.text, c.ground_truth):
                data = part.encode("utf-8", "surrogatepass")
                digest.update(len(data).to_bytes(8, "little") + data)
        return digest.hexdigest()


@dataclass(frozen=True)
class CompletionResult:
    id: str
    explanation: float
    format: float
    answer: float
    total: float
    predicted: str  # "" without an answer tag
    num_sentences: int
    num_neutral: int
    num_matching: int
    sentences: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (sentence, sorted labels) when asked for


@dataclass(frozen=True)
class ScoreResult:
    request_id: str
    model_version: str
    scores: tuple[CompletionResult, ...]


class InvalidRequestError(RewardServiceError, ValueError):
    """Bad input; the message starts with the offending field (INVALID_ARGUMENT / HTTP 400)."""


class RequestDeadlineError(RewardServiceError, TimeoutError):
    """The request's time budget ran out before it was scored (DEADLINE_EXCEEDED / HTTP 504)."""


def validate_request(req: ScoreRequestData, max_completions: int, max_chars: int) -> None:
    """Raise InvalidRequestError naming the first bad field."""
    if len(req.request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidRequestError(f"request_id: longer than {MAX_REQUEST_ID_CHARS} characters")
    if not req.completions:
        raise InvalidRequestError("completions: must not be empty")
    if len(req.completions) > max_completions:
        raise InvalidRequestError(
            f"completions: {len(req.completions)} completions, at most {max_completions} allowed"
        )
    seen: set[str] = set()
    for i, c in enumerate(req.completions):
        if not c.id:
            raise InvalidRequestError(f"completions[{i}].id: must not be empty")
        if len(c.id) > MAX_ID_CHARS:
            raise InvalidRequestError(f"completions[{i}].id: longer than {MAX_ID_CHARS} characters")
        if c.id in seen:
            raise InvalidRequestError(f"completions[{i}].id: duplicate id {c.id!r}")
        seen.add(c.id)
        if len(c.text) > max_chars:
            raise InvalidRequestError(
                f"completions[{i}].text: {len(c.text)} characters, at most {max_chars} allowed"
            )
        if normalize(c.ground_truth) == UNKNOWN:
            raise InvalidRequestError(
                f"completions[{i}].ground_truth: unknown emotion label {c.ground_truth[:64]!r}"
            )


@dataclass
class _Entry:
    fingerprint: str
    task: asyncio.Task
    expires: float
    waiters: int = 0


class RewardScorer:
    """Score requests through a shared SentenceBatcher, with idempotent replays."""

    def __init__(
        self,
        batcher: SentenceBatcher,
        *,
        max_completions: int = 256,
        max_chars: int = 20_000,
        idempotency_size: int = 10_000,
        idempotency_ttl_s: float = 600.0,
        metrics=None,
    ):
        self.batcher = batcher
        self.classifier = batcher.classifier
        self.max_completions = max_completions
        self.max_chars = max_chars
        self.idempotency_size = idempotency_size
        self.idempotency_ttl_s = idempotency_ttl_s
        self.metrics = metrics
        self._recent: collections.OrderedDict[str, _Entry] = collections.OrderedDict()

    async def score(self, req: ScoreRequestData) -> ScoreResult:
        """Validated, batched, assembled scores of `req`; replays come from the idempotency cache."""
        validate_request(req, self.max_completions, self.max_chars)
        if not req.request_id or self.idempotency_size == 0:
            return await self._with_timeout(self._compute(req), req.timeout_s)
        entry = self._lookup(req)
        entry.waiters += 1
        try:
            # shield: one caller giving up must not cancel the work another caller joined.
            return await self._with_timeout(asyncio.shield(entry.task), req.timeout_s)
        finally:
            entry.waiters -= 1
            if entry.waiters == 0 and not entry.task.done():
                entry.task.cancel()  # nobody waits any more: drop its sentences before inference
                self._recent.pop(req.request_id, None)

    def _lookup(self, req: ScoreRequestData) -> _Entry:
        now = time.monotonic()
        while self._recent and next(iter(self._recent.values())).expires < now:
            self._recent.popitem(last=False)
        fingerprint = req.fingerprint()
        entry = self._recent.get(req.request_id)
        if entry is not None and entry.task.done() and (entry.task.cancelled() or entry.task.exception()):
            entry = None  # failed attempts are not replayed: the retry computes afresh
        if entry is not None:
            if entry.fingerprint != fingerprint:
                raise InvalidRequestError("request_id: already used for a request with different content")
            if self.metrics is not None:
                self.metrics.idempotent_replays.inc()
            return entry
        task = asyncio.get_running_loop().create_task(self._compute(req))
        task.add_done_callback(_consume_exception)
        entry = _Entry(fingerprint, task, now + self.idempotency_ttl_s)
        self._recent[req.request_id] = entry
        self._recent.move_to_end(req.request_id)
        while len(self._recent) > self.idempotency_size:
            self._recent.popitem(last=False)
        return entry

    @staticmethod
    async def _with_timeout(awaitable, timeout_s: float | None) -> ScoreResult:
        if timeout_s is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, timeout_s)
        except asyncio.TimeoutError:
            raise RequestDeadlineError(f"request not scored within {timeout_s:.3f} s") from None

    async def _compute(self, req: ScoreRequestData) -> ScoreResult:
        sentences = [reward.split_sentences(reward.extract_think(c.text)) for c in req.completions]
        flat = [s for per_completion in sentences for s in per_completion]
        probs = await self.batcher.classify(flat)  # (sum S_i, L)
        clf = self.classifier
        # Label sets of the whole request at once: one vectorised pass instead of one per completion.
        sets = reward.label_sets(probs, clf.labels, clf.tau, clf.top_k) if flat else []
        results = []
        offset = 0
        for c, sents in zip(req.completions, sentences, strict=True):
            b = reward.score_from_label_sets(
                c.text, c.ground_truth, sents, sets[offset : offset + len(sents)]
            )
            offset += len(sents)
            results.append(
                CompletionResult(
                    id=c.id,
                    explanation=b.explanation,
                    format=b.format,
                    answer=b.answer,
                    total=b.total,
                    predicted=b.predicted or "",
                    num_sentences=b.num_sentences,
                    num_neutral=b.num_neutral,
                    num_matching=b.num_matching,
                    sentences=tuple(zip(b.sentences, (tuple(sorted(s)) for s in b.label_sets), strict=True))
                    if req.return_sentences
                    else (),
                )
            )
        if self.metrics is not None:
            self.metrics.observe_scores(results)
        return ScoreResult(req.request_id, clf.version, tuple(results))


def _consume_exception(task: asyncio.Task) -> None:
    # A failed shared task whose waiters already left would otherwise log "exception never retrieved".
    if not task.cancelled():
        task.exception()
