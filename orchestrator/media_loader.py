"""Clip loading for the training loop: decode once per content + settings, then serve from the cache.

Runs in the orchestrator (driver) process. `MediaLoader.load(record)` returns the plain dict that
crosses to rollout/ and policy/ (they import no orchestrator code, so only numpy and builtins):

    {"video": uint8 (T, H, W, 3)    (absent without a video),
     "audio": float32 (N,) at 16 kHz (absent without audio),
     "video_fps": float             (sampled frames per clip second; absent without a video),
     "cache_key": str               (64 hex digits: sha256 of the files' bytes + sampling settings),
     "info": {"duration_s", "source_frames", "source_fps", "source_sample_rate", "audio_s", ...}}

`take_with_media` is what the loop calls instead of `sampler.take`: a clip that became unreadable
is counted and its prompt replaced by the sampler's next one (data.on_media_error: skip), or stops
the run with a MediaError naming the file (fail).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from orchestrator.errors import MediaError
from orchestrator.media import DEFAULT_NUM_FRAMES, MediaCache, MediaSpec, cache_key, file_sha256

DEFAULT_CACHE_DIR = ".cache/media"
DEFAULT_MAX_PIXELS = 384 * 384  # R1-Omni's HumanOmni sees 384 x 384 frames

Decoder = Callable[[str | None, str | None, MediaSpec], tuple[dict[str, np.ndarray], dict]]


class MediaLoader:
    """Decoded media of prompt records through a content-addressed cache; counts decodes and cache hits."""

    def __init__(
        self,
        cache_dir: str | Path = DEFAULT_CACHE_DIR,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        decode: Decoder | None = None,
        decoder_id: str | None = None,
    ):
        if decode is None:  # PyAV is imported only when a clip is really loaded
            from orchestrator.media_av import DECODER, decode_media

            decode, decoder_id = decode_media, DECODER
        self.cache = MediaCache(cache_dir)
        self.max_pixels = max_pixels
        self._decode, self._decoder_id = decode, decoder_id or "custom"
        self.decodes = 0
        self.hits = 0
        self._sha: dict[tuple, str] = {}

    @classmethod
    def from_config(cls, data) -> MediaLoader:
        """The loader of a run's DataConfig (media_cache_dir, video_max_pixels)."""
        return cls(data.media_cache_dir, data.video_max_pixels)

    def spec_for(self, record) -> MediaSpec:
        if record.fps is not None:
            return MediaSpec(None, record.fps, self.max_pixels)
        return MediaSpec(record.num_frames or DEFAULT_NUM_FRAMES, None, self.max_pixels)

    def key_for(self, record) -> str:
        """The record's cache key; reads (and hashes) its files, so a missing file raises MediaError here."""
        video_sha = self._file_sha(record.video) if record.video else None
        from_video = record.audio == "from_video"
        audio_sha = self._file_sha(record.audio) if record.audio and not from_video else None
        return cache_key(video_sha, audio_sha, self.spec_for(record), self._decoder_id, from_video)

    def load(self, record) -> dict:
        """The media dict of `record` (see the module docstring); MediaError names the file and problem."""
        key = self.key_for(record)
        cached = self.cache.get(key)
        if cached is not None:
            self.hits += 1
            arrays, info = cached
        else:
            self.decodes += 1
            arrays, info = self._decode(record.video, record.audio_path, self.spec_for(record))
            self.cache.put(key, arrays, info)
        media = {name: arrays[name] for name in ("video", "audio") if name in arrays}
        if "video" in media:
            media["video_fps"] = float(info.get("video_fps", 0.0))
        media["cache_key"] = key
        media["info"] = info
        return media

    def _file_sha(self, path: str) -> str:
        # One hash per file version: (size, mtime, inode) change when a file is rewritten or replaced.
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise MediaError(path, "missing file") from None
        except OSError as err:
            raise MediaError(path, "undecodable", err.strerror or str(err)) from None
        stamp = (path, st.st_size, st.st_mtime_ns, st.st_ino)
        if stamp not in self._sha:
            try:
                self._sha[stamp] = file_sha256(path)
            except FileNotFoundError:
                raise MediaError(path, "missing file") from None
            except OSError as err:
                raise MediaError(path, "undecodable", err.strerror or str(err)) from None
        return self._sha[stamp]


def take_with_media(
    sampler, count: int, loader: MediaLoader, on_media_error: str = "skip"
) -> tuple[list, list[dict | None], list[MediaError]]:
    """`count` prompts from `sampler` with their media dicts (None for a text-only prompt).

    skip: a prompt whose clip fails is left out, the error returned, the sampler's next prompt taken;
    after as many failures in a row as the file has prompts, every clip is unreadable: MediaError.
    fail: the first failure raises its MediaError.
    """
    if on_media_error not in ("skip", "fail"):
        raise ValueError(f"on_media_error must be 'skip' or 'fail', got {on_media_error!r}")
    records, media, errors = [], [], []
    in_a_row = 0
    while len(records) < count:
        (record,) = sampler.take(1)
        if not record.has_media:
            records.append(record)
            media.append(None)
            continue
        try:
            item = loader.load(record)
        except MediaError as err:
            if on_media_error == "fail":
                raise MediaError(
                    err.path, err.problem, f"prompt {record.id!r}; data.on_media_error=fail" + _also(err)
                ) from None
            errors.append(err)
            in_a_row += 1
            if in_a_row >= len(sampler.records):
                raise MediaError(
                    err.path, err.problem, f"and the {in_a_row - 1} clips tried before it: no readable clip"
                ) from None
            continue
        in_a_row = 0
        records.append(record)
        media.append(item)
    return records, media, errors


def _also(err: MediaError) -> str:
    return f"; {err.detail}" if err.detail else ""
