"""Helpers of the reward service tests: start a service in-process, realistic completions, certificates."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from reward_service.client import Completion, RewardClient
from reward_service.server.config import RewardServiceConfig
from reward_service.server.service import RewardService
from tests.support.tiny_erv import WORDS

EMOTIONS = ("happy", "sad", "angry", "neutral", "surprise", "fear", "disgust", "joy", "worried")


class GatedModel:
    """Wraps a classifier: inference waits while `gate` is clear; records what reached the model."""

    def __init__(self, model):
        self.model = model
        self.labels, self.version, self.tau, self.top_k = model.labels, model.version, model.tau, model.top_k
        self.max_length = getattr(model, "max_length", 128)
        self.gate = threading.Event()
        self.gate.set()
        self.seen: list[str] = []

    def predict_proba(self, sentences: list[str]) -> np.ndarray:
        self.gate.wait(timeout=60)
        self.seen.extend(sentences)
        return self.model.predict_proba(sentences)


@contextlib.asynccontextmanager
async def running_service(classifier, **overrides):
    """A started RewardService on free loopback ports; always stopped on exit."""
    values = {"grpc_port": 0, "http_port": 0, "drain_seconds": 5.0, "max_wait_ms": 2.0}
    values.update(overrides)
    service = RewardService(RewardServiceConfig(**values), classifier)
    try:
        await service.start()
        yield service
    finally:
        await service.stop(1.0)


def stream_from_config(config: RewardServiceConfig, groups: list[list[Completion]]) -> tuple[list[str], list]:
    """Start RewardService.from_config(config) (the path `reward serve` takes), score `groups` on one
    ScoreStream over loopback, stop it; returns (the model's providers, each group's {id: score})."""
    service = RewardService.from_config(config)

    async def main():
        await service.start()
        try:
            async with RewardClient(f"127.0.0.1:{service.grpc_port}") as client, client.stream() as stream:
                return await asyncio.gather(
                    *(stream.score(g, request_id=f"r{k}") for k, g in enumerate(groups))
                )
        finally:
            await service.stop(1.0)

    return service.classifier.providers, asyncio.run(main())


def assert_scores_equal(model, groups: list[list[Completion]], results: list) -> None:
    """Every completion scored once, each exactly as the reward math scores it with `model`."""
    from reward_service.core import reward

    for group, scores in zip(groups, results, strict=True):
        assert set(scores) == {c.id for c in group}
        for c in group:
            want = reward.score_completion(
                c.text,
                c.ground_truth,
                lambda s: (model.predict_proba(s), model.labels),
                model.tau,
                model.top_k,
            )
            got = scores[c.id]
            assert (got.explanation, got.format, got.answer, got.total) == pytest.approx(
                (want.explanation, want.format, want.answer, want.total), abs=1e-9
            ), c.id
            assert (got.num_sentences, got.num_neutral, got.num_matching) == (
                want.num_sentences, want.num_neutral, want.num_matching,
            )  # fmt: skip


def sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(4, 14))
    return " ".join(words).capitalize() + rng.choice([".", ".", "!", "?"])


def completion_text(rng: random.Random, num_sentences: int = 8) -> str:
    think = " ".join(sentence(rng) for _ in range(num_sentences))
    answer = rng.choice(EMOTIONS)
    if rng.random() < 0.1:  # some malformed completions, as a policy early in training writes
        return f"<think>{think}"
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


def make_group(rng: random.Random, prefix: str, size: int = 16, num_sentences: int = 8) -> list[Completion]:
    truth = rng.choice(EMOTIONS)
    return [Completion(f"{prefix}-{i}", completion_text(rng, num_sentences), truth) for i in range(size)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_certs(folder: Path) -> dict[str, Path]:
    """Self-signed CA, a server certificate for 127.0.0.1/localhost and a client certificate (openssl)."""

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "san.ext", "-out", f"{name}.pem")  # fmt: skip
    return {n: folder / f for n, f in [("ca", "ca.pem"), ("server_cert", "server.pem"), ("server_key", "server.key"),
                                      ("client_cert", "client.pem"), ("client_key", "client.key")]}  # fmt: skip
