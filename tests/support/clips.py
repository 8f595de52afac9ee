"""Synthetic emotion clips for tests: a session fixture that builds a small subset with data/clips/build.py.

Runs in the pytest process. Clips go to .cache/clips/ (shared with `make clips`; a built clip is never
rebuilt), so the first session pays about a second per label. Tests that delete or corrupt a clip work on
copies (`copy_rows`). The odd files of `data check` tests (no audio, no frames) are written here with PyAV.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIPS_DIR = ROOT / ".cache" / "clips"
PER_LABEL = 1  # 7 train + 7 test clips for the test session


def clip_builder():
    """data/clips/build.py as a module (data/ is no package)."""
    spec = importlib.util.spec_from_file_location("clip_builder", ROOT / "data" / "clips" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class ClipSet:
    dir: Path
    train: Path  # JSONL, "video" relative to it
    test: Path

    def rows(self, split: str = "train") -> list[dict]:
        path = self.train if split == "train" else self.test
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def clip_set() -> ClipSet:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (make sysdeps)")
    files = clip_builder().build(CLIPS_DIR, per_label=PER_LABEL)
    return ClipSet(CLIPS_DIR, files["train"], files["test"])


def copy_rows(clips: ClipSet, folder: Path, count: int | None = None, split: str = "train") -> Path:
    """A JSONL in `folder` whose rows point to private copies of the clips (safe to delete or corrupt)."""
    rows = clips.rows(split)[:count]
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    for row in rows:
        copy = folder / "clips" / Path(row["video"]).name
        shutil.copyfile(clips.dir / row["video"], copy)
        row["video"] = f"clips/{copy.name}"
    path = folder / "copies.jsonl"
    write_rows(path, rows)
    return path


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def one_track(src: Path, dst: Path, kind: str) -> Path:
    """A copy of clip `src` with only its "video" or "audio" track (packets copied, not re-encoded)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        source = inp.streams.video[0] if kind == "video" else inp.streams.audio[0]
        stream = out.add_stream_from_template(source)
        for packet in inp.demux(source):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return dst


def empty_video(dst: Path) -> Path:
    """An AVI whose video stream holds no frame (decoders report zero frames, not an unreadable file)."""
    import av

    with av.open(str(dst), "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=15)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        out.start_encoding()
    return dst
