"""Media sampling settings, uniform frame indices, frame sizes, cache keys and the decoded-clip cache.

Pure parts of clip loading, run in the orchestrator process (the driver and `erv-grpo data check`):
numpy, hashlib and files only; the PyAV calls live in orchestrator/media_av.py. A decoded clip is
stored once under its content-addressed key (sha256 of the files' bytes + sampling settings) as an
.npz, written atomically, so every later read returns bit-identical arrays.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000  # what the omni processors' Whisper feature extractors expect
DEFAULT_NUM_FRAMES = 8  # R1-Omni samples 8 frames uniformly over the clip
CACHE_FORMAT = 1  # bump when the stored layout or the decoding changes


@dataclass(frozen=True)
class MediaSpec:
    """How one prompt's media are sampled: exactly one of num_frames / fps when there is a video."""

    num_frames: int | None = DEFAULT_NUM_FRAMES
    fps: float | None = None
    max_pixels: int = 384 * 384
    sample_rate: int = SAMPLE_RATE

    def frame_count(self, total_frames: int, duration_s: float) -> int:
        """Frames to sample from a clip of `total_frames` frames lasting `duration_s` seconds."""
        if total_frames <= 0:
            return 0
        if self.fps is not None:  # sampled at `fps` over the clip, at least one frame
            wanted = max(1, int(math.floor(duration_s * self.fps + 1e-9)))
        else:
            wanted = int(self.num_frames or DEFAULT_NUM_FRAMES)
        return min(wanted, total_frames)


def uniform_frame_indices(total_frames: int, count: int) -> list[int]:
    """`count` frame indices spread evenly from the first to the last frame (R1-Omni's linspace sampling).

    total 10, count 4 -> [0, 3, 6, 9]; count 1 -> the middle frame; count >= total -> every frame.
    """
    if total_frames <= 0 or count <= 0:
        return []
    if count >= total_frames:
        return list(range(total_frames))
    if count == 1:
        return [(total_frames - 1) // 2]
    return [round(i * (total_frames - 1) / (count - 1)) for i in range(count)]


def fit_within(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) scaled down, aspect kept, so that height * width <= max_pixels; never scaled up."""
    if height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    h, w = max(1, math.floor(height * scale)), max(1, math.floor(width * scale))
    while h * w > max_pixels:  # float rounding at the boundary
        if h >= w:
            h -= 1
        else:
            w -= 1
    return h, w


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_key(
    video_sha: str | None, audio: str | None, spec: MediaSpec, decoder: str, audio_from_video: bool = False
) -> str:
    """Content address of one decoded clip: the files' sha256 plus every setting that changes the arrays.

    `audio` is the audio file's sha256 (None: no audio); with audio_from_video the video's own track.
    Video settings enter only when there is a video, so an audio-only key ignores them.
    """
    fields = {
        "format": CACHE_FORMAT,
        "decoder": decoder,
        "video": video_sha,
        "audio": "from_video" if audio_from_video else audio,
        "sample_rate": spec.sample_rate,
    }
    if video_sha is not None:
        fields.update(num_frames=spec.num_frames, fps=spec.fps, max_pixels=spec.max_pixels)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class MediaCache:
    """Decoded clips on disk: ROOT/ab/abcdef....npz holding `video`, `audio` and a JSON `info` string."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
        """(arrays, info) stored under `key`, or None when absent or unreadable (then it is decoded again)."""
        path = self.path_for(key)
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files if name != "info"}
                info = json.loads(str(npz["info"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        return arrays, info

    def put(self, key: str, arrays: dict[str, np.ndarray], info: dict) -> Path:
        """Store atomically: a reader sees the whole entry or none (temp file in the folder, then rename)."""
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, info=np.array(json.dumps(info, sort_keys=True)), **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
