"""Prompt data: JSONL loading with validation, and a seeded sampler whose position is checkpointed.

Runs in the orchestrator process. A line is {"id", "prompt" (text or chat messages),
"ground_truth" (an emotion label), "dataset"}; video/audio paths are rejected for now.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import OrchestratorError
from reward_service.core.labels import normalize

_MEDIA_KEYS = ("video", "audio", "video_path", "audio_path", "image", "images", "videos")


@dataclass(frozen=True)
class PromptRecord:
    id: str
    prompt: str | list[dict]
    ground_truth: str  # canonical label
    dataset: str


def load_prompts(path: str | Path) -> list[PromptRecord]:
    """Read and validate a prompt JSONL; a bad line exits with its file, line number and field."""
    path = Path(path)
    if not path.is_file():
        raise OrchestratorError(f"prompt file {path} does not exist")
    records, seen = [], set()
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise OrchestratorError(f"{where}: not JSON ({err.msg})") from None
        media = [k for k in _MEDIA_KEYS if row.get(k)]
        if media:
            raise OrchestratorError(
                f"{where}: field {media[0]!r}: video/audio inputs are not supported yet; "
                "describe the cues in the text prompt"
            )
        for key in ("id", "prompt", "ground_truth"):
            if key not in row:
                raise OrchestratorError(f"{where}: missing field {key!r}")
        prompt = row["prompt"]
        if not (isinstance(prompt, str) and prompt.strip()) and not _is_messages(prompt):
            raise OrchestratorError(f"{where}: field 'prompt' must be text or a list of chat messages")
        label = normalize(str(row["ground_truth"]))
        if label == "unknown":
            raise OrchestratorError(f"{where}: field 'ground_truth': unknown emotion {row['ground_truth']!r}")
        if row["id"] in seen:
            raise OrchestratorError(f"{where}: field 'id': duplicate id {row['id']!r}")
        seen.add(row["id"])
        records.append(PromptRecord(str(row["id"]), prompt, label, str(row.get("dataset", path.stem))))
    if not records:
        raise OrchestratorError(f"prompt file {path} holds no prompts")
    return records


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
