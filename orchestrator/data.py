"""Prompt data: JSONL loading with validation, and a seeded sampler whose position is checkpointed.

Runs in the orchestrator process. A line is {"id", "prompt" (text or chat messages),
"ground_truth" (an emotion label), "dataset"}, optionally with a clip: "video" (a path relative to
the JSONL file or absolute), "audio" (an audio file, or "from_video" for the clip's own track) and
"num_frames" or "fps" (default: 8 frames sampled uniformly, as R1-Omni). Paths are resolved here;
whether the files decode is checked by orchestrator/media_loader.py and `erv-grpo data check`.
The text stays the question: the model's placeholders are added where the chat template is applied.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import OrchestratorError
from orchestrator.media import DEFAULT_NUM_FRAMES
from reward_service.core.labels import normalize

# Media keys of other formats, named in the error so a converted file is not half-read.
_UNSUPPORTED_MEDIA = ("video_path", "audio_path", "image", "images", "videos")
_PLACEHOLDERS = ("<video>", "<audio>", "<image>")
FROM_VIDEO = "from_video"


@dataclass(frozen=True)
class PromptRecord:
    id: str
    prompt: str | list[dict]
    ground_truth: str  # canonical label
    dataset: str
    video: str | None = None  # absolute path of the clip
    audio: str | None = None  # absolute path of an audio file, or FROM_VIDEO
    num_frames: int | None = None  # frames sampled uniformly; None with fps set (default 8 otherwise)
    fps: float | None = None  # or: frames sampled at this rate over the clip

    @property
    def has_media(self) -> bool:
        return self.video is not None or self.audio is not None

    @property
    def audio_path(self) -> str | None:
        """The file whose audio track is used (the clip itself for "from_video"), or None."""
        return self.video if self.audio == FROM_VIDEO else self.audio


def load_prompts(path: str | Path) -> list[PromptRecord]:
    """Read and validate a prompt JSONL; a bad line exits with its file, line number and field."""
    records = []
    for _where, item in read_prompt_rows(path):
        if isinstance(item, OrchestratorError):
            raise item
        records.append(item)
    if not records:
        raise OrchestratorError(f"prompt file {path} holds no prompts")
    return records


def read_prompt_rows(path: str | Path) -> list[tuple[str, PromptRecord | OrchestratorError]]:
    """Every non-empty line as ("FILE:LINE", its record or the error naming its field), in file order."""
    path = Path(path)
    if not path.is_file():
        raise OrchestratorError(f"prompt file {path} does not exist")
    rows, seen = [], set()
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            record = _parse_row(line, where, path)
            if record.id in seen:
                raise OrchestratorError(f"{where}: field 'id': duplicate id {record.id!r}")
            seen.add(record.id)
            rows.append((where, record))
        except OrchestratorError as err:
            rows.append((where, err))
    return rows


def _parse_row(line: str, where: str, path: Path) -> PromptRecord:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise OrchestratorError(f"{where}: not JSON ({err.msg})") from None
    if not isinstance(row, dict):
        raise OrchestratorError(f"{where}: not a JSON object")
    other = [k for k in _UNSUPPORTED_MEDIA if row.get(k)]
    if other:
        raise OrchestratorError(
            f"{where}: field {other[0]!r} is not supported; give a clip as 'video' (and 'audio')"
        )
    for key in ("id", "prompt", "ground_truth"):
        if key not in row:
            raise OrchestratorError(f"{where}: missing field {key!r}")
    prompt = row["prompt"]
    if not (isinstance(prompt, str) and prompt.strip()) and not _is_messages(prompt):
        raise OrchestratorError(f"{where}: field 'prompt' must be text or a list of chat messages")
    texts = [prompt] if isinstance(prompt, str) else [m["content"] for m in prompt]
    tag = next((t for t in _PLACEHOLDERS for x in texts if isinstance(x, str) and t in x), None)
    if tag:
        raise OrchestratorError(
            f"{where}: field 'prompt' holds the placeholder {tag}; keep only the question "
            "(the model's own placeholders are added for 'video'/'audio')"
        )
    label = normalize(str(row["ground_truth"]))
    if label == "unknown":
        raise OrchestratorError(f"{where}: field 'ground_truth': unknown emotion {row['ground_truth']!r}")
    video, audio, num_frames, fps = _media_fields(row, where, path.parent)
    return PromptRecord(
        str(row["id"]), prompt, label, str(row.get("dataset", path.stem)),
        video, audio, num_frames, fps,
    )  # fmt: skip


def _media_fields(row: dict, where: str, base: Path):
    def path_field(key: str) -> str | None:
        value = row.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise OrchestratorError(f"{where}: field {key!r} must be a file path")
        return str((base / value).resolve()) if not Path(value).is_absolute() else value

    video = path_field("video")
    audio = row.get("audio")
    if audio == FROM_VIDEO:
        if video is None:
            raise OrchestratorError(f"{where}: field 'audio': 'from_video' needs a 'video'")
    else:
        audio = path_field("audio")
    num_frames, fps = row.get("num_frames"), row.get("fps")
    if (num_frames is not None or fps is not None) and video is None:
        raise OrchestratorError(
            f"{where}: field {'num_frames' if num_frames is not None else 'fps'!r} needs a 'video'"
        )
    if num_frames is not None and fps is not None:
        raise OrchestratorError(f"{where}: fields 'num_frames' and 'fps': give one of them, not both")
    if num_frames is not None and (
        isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1
    ):
        raise OrchestratorError(
            f"{where}: field 'num_frames' must be a whole number >= 1, got {num_frames!r}"
        )
    if fps is not None and (
        isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps < math.inf
    ):
        raise OrchestratorError(f"{where}: field 'fps' must be a number > 0, got {fps!r}")
    if video is not None and num_frames is None and fps is None:
        num_frames = DEFAULT_NUM_FRAMES
    return video, audio, num_frames, (float(fps) if fps is not None else None)


def _is_messages(prompt) -> bool:
    return (
        isinstance(prompt, list)
        and bool(prompt)
        and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in prompt)
    )


class PromptSampler:
    """Epoch-wise seeded permutation of the prompts; `state()` / `load_state()` resume at the exact position."""

    def __init__(self, records: list[PromptRecord], seed: int, shuffle: bool = True):
        self.records = records
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.cursor = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.records)))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def take(self, count: int) -> list[PromptRecord]:
        out = []
        while len(out) < count:
            if self.cursor == len(self._order):
                self.epoch += 1
                self.cursor = 0
                self._order = self._permutation(self.epoch)
            out.append(self.records[self._order[self.cursor]])
            self.cursor += 1
        return out

    def state(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._permutation(self.epoch)
