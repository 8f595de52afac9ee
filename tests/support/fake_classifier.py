"""A fake ERV for batcher/scorer/service tests: deterministic probabilities from keywords.

A sentence containing a canonical label word (e.g. "happy") gets probability 0.9 for that
label; other columns 0.01; a sentence with no label word is neutral (0.8). Records every batch
it was called with, and can block (gate) or sleep to simulate a slow model.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from reward_service.core.labels import CANONICAL_LABELS


class FakeClassifier:
    def __init__(self, delay_s: float = 0.0, version: str = "fake-v1"):
        self.labels = list(CANONICAL_LABELS)
        self.version = version
        self.tau = 0.1
        self.top_k = 2
        self.max_length = 128
        self.delay_s = delay_s
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()  # clear() to hold inference until set() again
        self.fail_next = False

    def predict_proba(self, sentences: list[str]) -> np.ndarray:
        self.gate.wait(timeout=30)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("fake model failure")
        self.batches.append(list(sentences))
        if self.delay_s:
            time.sleep(self.delay_s)
        probs = np.full((len(sentences), len(self.labels)), 0.01, dtype=np.float32)  # (S, L)
        for i, sentence in enumerate(sentences):
            words = sentence.lower().replace(".", " ").split()
            hits = [j for j, label in enumerate(self.labels) if label in words]
            for j in hits:
                probs[i, j] = 0.9
            if not hits:
                probs[i, self.labels.index("neutral")] = 0.8
        return probs

    @property
    def sentences_seen(self) -> int:
        return sum(len(b) for b in self.batches)
