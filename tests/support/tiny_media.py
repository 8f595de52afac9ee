"""Synthetic media dicts for the multimodal tests: drawn frames and a sine wave, as the clip decoder returns them.

`make_media(seed)` -> {"video": uint8 (T, H, W, 3), "audio": float32 (N,) at 16 kHz}; deterministic.
Also the chat messages of a clip prompt (typed content parts the tiny models' templates render).
"""

from __future__ import annotations

import numpy as np


def make_media(
    seed: int = 0, frames: int = 4, size: int = 56, seconds: float = 1.0, audio: bool = True
) -> dict:
    rng = np.random.default_rng(seed)
    video = np.zeros((frames, size, size, 3), dtype=np.uint8)
    video[:] = rng.integers(0, 255, 3, dtype=np.uint8)  # background colour
    for t in range(frames):  # a square that moves: frames differ
        x = (seed * 7 + t * 5) % (size - 16)
        video[t, 20:36, x : x + 16] = rng.integers(0, 255, 3, dtype=np.uint8)
    media = {"video": video}
    if audio:
        n = int(16000 * seconds)
        media["audio"] = (0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * np.arange(n) / 16000)).astype(
            np.float32
        )
    return media


def clip_messages(question: str = "Which emotion is the most obvious?", audio: bool = True) -> list[dict]:
    parts = (
        [{"type": "video"}] + ([{"type": "audio"}] if audio else []) + [{"type": "text", "text": question}]
    )
    return [{"role": "user", "content": parts}]
