"""Transport-independent core of the reward service: validate, deduplicate, batch, assemble.

Runs in the reward service process on its event loop; the gRPC servicer and the FastAPI app
are thin adapters around one RewardScorer. A request's explanation sentences go through the
shared SentenceBatcher; per-completion rewards are assembled from their sentences' rows with
`reward.score_from_probs`. Idempotency: a request_id seen before (bounded, time-limited cache,
reward_service.server.idempotency) returns the same result, and joins the computation if it is
still running. The CPU work of a large request (validation, content hash, sentence splitting,
assembly) runs on a worker thread, so the event loop keeps answering health checks meanwhile.
A sentence the model cannot take fails its own request with INVALID_ARGUMENT, not its batch.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from reward_service.core import reward
from reward_service.core.labels import UNKNOWN, normalize
from reward_service.core.reward import DEFAULT_WEIGHTS, Completion, RewardWeights, RewardWeightsError
from reward_service.errors import RewardServiceError
from reward_service.server.batcher import SentenceBatcher, UnscorableSentenceError
from reward_service.server.idempotency import IdempotencyCache

MAX_ID_CHARS = 256
MAX_REQUEST_ID_CHARS = 128
# Requests with fewer characters than this are prepared on the event loop: their (linear) text
# work takes well under a millisecond, less than the hop to a thread and back.
INLINE_MAX_CHARS = 32_768


@dataclass(frozen=True)
class ScoreRequestData:
    request_id: str
    completions: tuple[Completion, ...]
    return_sentences: bool = False
    timeout_s: float | None = None  # server-side budget of this request; None = none
    weights: RewardWeights | None = None  # None: the server's configured weights

    def fingerprint(self) -> str:
        """Content hash: a reused request_id must come with exactly this content."""
        digest = hashlib.sha256(b"1" if self.return_sentences else b"0")
        if self.weights is not None:  # absent weights keep the fingerprint of older requests
            w = self.weights
            digest.update(f"w{w.explanation!r},{w.format!r},{w.answer!r}".encode())
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


def request_weights(explanation, fmt, answer) -> RewardWeights:
    """RewardWeights of a request; a bad value raises InvalidRequestError naming it (weights.format)."""
    try:
        return RewardWeights(explanation, fmt, answer)
    except RewardWeightsError as err:
        raise InvalidRequestError(str(err)) from None


class RequestDeadlineError(RewardServiceError, TimeoutError):
    """The request's time budget ran out before it was scored (DEADLINE_EXCEEDED / HTTP 504)."""


def _check_unicode(value: str, field: str) -> None:
    """A lone surrogate (JSON "\\ud800") is a str but no Unicode text: no tokenizer can take it."""
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidRequestError(
            f"{field}: not valid Unicode text (lone surrogate at character {err.start})"
        ) from None


def validate_request(req: ScoreRequestData, max_completions: int, max_chars: int) -> None:
    """Raise InvalidRequestError naming the first bad field."""
    _check_unicode(req.request_id, "request_id")
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
        _check_unicode(c.id, f"completions[{i}].id")
        _check_unicode(c.text, f"completions[{i}].text")
        _check_unicode(c.ground_truth, f"completions[{i}].ground_truth")
        if normalize(c.ground_truth) == UNKNOWN:
            raise InvalidRequestError(
                f"completions[{i}].ground_truth: unknown emotion label {c.ground_truth[:64]!r}"
            )


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
        idempotency_max_bytes: int = 1 << 30,
        metrics=None,
        weights: RewardWeights = DEFAULT_WEIGHTS,
    ):
        self.batcher = batcher
        self.classifier = batcher.classifier
        self.max_completions = max_completions
        self.max_chars = max_chars
        self.idempotency = IdempotencyCache(idempotency_size, idempotency_ttl_s, idempotency_max_bytes)
        self.metrics = metrics
        self.weights = weights  # used for requests that carry none

    async def score(self, req: ScoreRequestData) -> ScoreResult:
        """Validated, batched, assembled scores of `req`; replays come from the idempotency cache."""
        cached = bool(req.request_id) and self.idempotency.enabled
        fingerprint, sentences = await self._off_loop(req, self._prepare, req, cached)
        if not cached:
            return await self._with_timeout(self._compute(req, sentences), req.timeout_s)
        entry = self._lookup(req, fingerprint, sentences)
        entry.waiters += 1
        try:
            # shield: one caller giving up must not cancel the work another caller joined.
            return await self._with_timeout(asyncio.shield(entry.task), req.timeout_s)
        finally:
            entry.waiters -= 1
            if entry.waiters == 0 and not entry.task.done():
                entry.task.cancel()  # nobody waits any more: drop its sentences before inference
                self.idempotency.remove(req.request_id, entry)

    def _prepare(self, req: ScoreRequestData, cached: bool) -> tuple[str, list[list[str]]]:
        """(content hash or "", sentences of each completion); raises InvalidRequestError."""
        validate_request(req, self.max_completions, self.max_chars)
        sentences = [reward.split_sentences(reward.extract_think(c.text)) for c in req.completions]
        return (req.fingerprint() if cached else ""), sentences

    @staticmethod
    async def _off_loop(req: ScoreRequestData, fn, *args):
        """fn(*args) on a worker thread for a large request, inline for a small one."""
        if sum(len(c.text) for c in req.completions) < INLINE_MAX_CHARS:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    def _lookup(self, req: ScoreRequestData, fingerprint: str, sentences: list[list[str]]):
        entry = self.idempotency.get(req.request_id)
        if entry is not None and entry.task.done() and (entry.task.cancelled() or entry.task.exception()):
            entry = None  # failed just now (its done callback, which drops it, has not run yet)
        if entry is not None:
            if entry.fingerprint != fingerprint:
                raise InvalidRequestError("request_id: already used for a request with different content")
            if self.metrics is not None:
                self.metrics.idempotent_replays.inc()
            return entry
        task = asyncio.get_running_loop().create_task(self._compute(req, sentences))
        task.add_done_callback(_consume_exception)
        return self.idempotency.add(req.request_id, fingerprint, task)

    @staticmethod
    async def _with_timeout(awaitable, timeout_s: float | None) -> ScoreResult:
        if timeout_s is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, timeout_s)
        except asyncio.TimeoutError:
            raise RequestDeadlineError(f"request not scored within {timeout_s:.3f} s") from None

    async def _compute(self, req: ScoreRequestData, sentences: list[list[str]]) -> ScoreResult:
        flat = [s for per_completion in sentences for s in per_completion]
        try:
            probs = await self.batcher.classify(flat)  # (sum S_i, L)
        except UnscorableSentenceError as err:
            i = next(i for i, sents in enumerate(sentences) if err.sentence in sents)
            k = sentences[i].index(err.sentence)
            raise InvalidRequestError(f"completions[{i}].text: sentence {k} {err}") from None
        result = await self._off_loop(req, self._assemble, req, sentences, probs)
        if self.metrics is not None:
            self.metrics.observe_scores(result.scores)
        return result

    def _assemble(self, req: ScoreRequestData, sentences: list[list[str]], probs) -> ScoreResult:
        """Per-completion rewards from the rows of the request's sentences (pure CPU work)."""
        flat_len = sum(len(sents) for sents in sentences)
        clf = self.classifier
        weights = req.weights or self.weights
        # Label sets of the whole request at once: one vectorised pass instead of one per completion.
        sets = reward.label_sets(probs, clf.labels, clf.tau, clf.top_k) if flat_len else []
        results = []
        offset = 0
        for c, sents in zip(req.completions, sentences, strict=True):
            b = reward.score_from_label_sets(
                c.text, c.ground_truth, sents, sets[offset : offset + len(sents)], weights
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
        return ScoreResult(req.request_id, clf.version, tuple(results))


def _consume_exception(task: asyncio.Task) -> None:
    # A failed shared task whose waiters already left would otherwise log "exception never retrieved".
    if not task.cancelled():
        task.exception()
