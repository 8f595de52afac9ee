"""PyAV adapter: decode a clip's sampled frames (uint8 RGB) and its audio (mono float32, 16 kHz).

Runs in the orchestrator process, called by orchestrator/media_loader.py on a cache miss (and by
`erv-grpo data check`). The only module that imports `av` (PyAV ships ffmpeg in its wheel, so any
container ffmpeg reads works); every failure becomes a MediaError naming the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from orchestrator.errors import MediaError
from orchestrator.media import MediaSpec, fit_within, uniform_frame_indices

DECODER = f"pyav-{av.__version__}"  # part of the cache key: another ffmpeg may resample differently


def decode_media(
    video: str | Path | None, audio: str | Path | None, spec: MediaSpec
) -> tuple[dict[str, np.ndarray], dict]:
    """({"video": (T, H, W, 3) uint8, "audio": (N,) float32}, info) for a prompt's files.

    `audio` is an audio file, the video path itself for the clip's own track, or None (no audio).
    info: duration_s, source_frames, source_fps, video_fps (sampled frames per clip second),
    source_sample_rate, audio_s.
    """
    arrays, info = {}, {}
    if video is not None:
        arrays["video"], video_info = _guarded(video, _video, spec)
        info.update(video_info)
    if audio is not None:
        arrays["audio"], audio_info = _guarded(audio, _audio, spec.sample_rate)
        info.update(audio_info)
    return arrays, info


def _guarded(path, fn, *args):
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "missing file")
    try:
        return fn(path, *args)
    except MediaError:
        raise
    except FileNotFoundError:  # deleted between the check and the open
        raise MediaError(path, "missing file") from None
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise MediaError(path, "undecodable", str(err)) from None


def _video(path: Path, spec: MediaSpec) -> tuple[np.ndarray, dict]:
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise MediaError(path, "no video stream")
        stream = container.streams.video[0]
        # Demuxing only (no decoding) counts the frames; stream.frames is 0 in many containers.
        total = sum(1 for packet in container.demux(stream) if packet.size)
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        if not rate and stream.duration and stream.time_base:
            rate = total / float(stream.duration * stream.time_base)
    if total == 0:
        raise MediaError(path, "zero frames")
    indices = _indices(total, rate, spec)
    frames, decoded = _frames_at(path, indices, spec.max_pixels)
    if len(frames) < len(indices):
        # Fewer decodable frames than packets (packed or broken frames): sample the frames that exist.
        if decoded == 0:
            raise MediaError(path, "zero frames", "no packet decoded to a frame")
        total = decoded
        frames, _ = _frames_at(path, _indices(total, rate, spec), spec.max_pixels)
    duration = total / rate if rate else 0.0
    video = np.stack(frames)
    info = {
        "duration_s": duration,
        "source_frames": total,
        "source_fps": rate,
        "video_fps": len(frames) / duration if duration else 0.0,
    }
    return video, info


def _indices(total: int, rate: float, spec: MediaSpec) -> list[int]:
    return uniform_frame_indices(total, spec.frame_count(total, total / rate if rate else 0.0))


def _frames_at(path: Path, indices: list[int], max_pixels: int) -> tuple[list[np.ndarray], int]:
    """RGB frames at `indices` (resized within max_pixels) and how many frames were decoded."""
    wanted, frames, n, size = set(indices), [], 0, None
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            if n in wanted:
                # One size for the whole clip (the first frame's), even if the stream changes resolution.
                h, w = size = size or fit_within(frame.height, frame.width, max_pixels)
                # AREA averages the source pixels a downscaled pixel covers (no aliasing of thin strokes).
                rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA")
                frames.append(rgb.to_ndarray())
            n += 1
            if len(frames) == len(wanted):
                break
    return frames, n


def _audio(path: Path, sample_rate: int) -> tuple[np.ndarray, dict]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise MediaError(path, "no audio stream")
        stream = container.streams.audio[0]
        source_rate = int(stream.rate or 0)
        # ffmpeg's resampler (swresample) downmixes to mono and converts the rate.
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        for frame in container.decode(stream):
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise MediaError(path, "zero audio samples")
    return audio, {"source_sample_rate": source_rate, "audio_s": audio.size / sample_rate}
