"""`erv-grpo data convert` (R1-Omni JSON -> prompt JSONL) and `erv-grpo data check` (every row, every clip).

Runs in the user's shell process, and `require_good_prompt_file` in the training driver at start:
the same problem lines stop a run before any worker starts. Decoding goes through MediaLoader, so a
checked file's clips are already in the media cache when training reads them.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.data import FROM_VIDEO, read_prompt_rows
from orchestrator.errors import MediaError, OrchestratorError
from orchestrator.media_loader import DEFAULT_CACHE_DIR, DEFAULT_MAX_PIXELS, MediaLoader
from reward_service.core.labels import DATASET_LABELS, UNKNOWN, normalize

_TAGS = re.compile(r"<(video|audio|image)>\s*")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
SHOWN_PROBLEMS = 50  # a converter error lists this many records, then a count


def register(sub, groups) -> None:
    """Add `data convert` and `data check` to the parser tree built by orchestrator/cli.py."""
    data = groups["data"]
    conv = data.add_parser(
        "convert",
        help="R1-Omni / ERV JSON (video + conversations) to the project's prompt JSONL",
        description="Read R1-Omni's JSON list ({'video', 'conversations': [{'from': 'human', 'value': "
        "'<video>\\n<audio>\\nQUESTION'}, {'from': 'gpt', 'value': '...<answer>LABEL</answer>'}]}) and write one "
        "JSONL row per record: the question without placeholders, the normalised label, the clip's absolute "
        "path, audio 'from_video' when the prompt has <audio>. Nothing is written if any record is bad.",
    )
    conv.add_argument("--from", dest="source", choices=["r1-omni"], required=True, help="input format")
    conv.add_argument("input", type=Path, metavar="IN.json", help="R1-Omni JSON (a list, or JSON lines)")
    conv.add_argument("output", type=Path, metavar="OUT.jsonl", help="prompt JSONL to write")
    conv.add_argument("--media-root", type=Path, default=None, help="folder relative clip paths start from "
                      "(default: IN.json's folder)")  # fmt: skip
    conv.add_argument("--labels", choices=sorted(set(DATASET_LABELS) - {"emer"}), default=None,
                      help="only this dataset's labels are accepted; also the rows' 'dataset'")  # fmt: skip
    conv.set_defaults(func=_convert)
    check = data.add_parser(
        "check",
        help="validate every row and decode every clip once; exit 1 on any bad row",
        description="Print rows per label and the duration / frame count / sample-rate spread of the clips, "
        "then FILE:LINE: problem for each bad row (missing file, no video stream, no audio stream where audio "
        "is asked for, undecodable, zero frames, unknown label). Decoded clips stay in the media cache.",
    )
    check.add_argument("file", type=Path, metavar="FILE.jsonl", help="prompt JSONL")
    check.add_argument("--labels", choices=sorted(DATASET_LABELS), default=None,
                       help="also flag labels outside this dataset's set")  # fmt: skip
    check.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="media cache (default %(default)s)")
    check.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                       help="frame pixel limit, as data.video_max_pixels (default %(default)s)")  # fmt: skip
    check.set_defaults(func=_check)


# -- convert --------------------------------------------------------------------------------------
def convert_r1_omni(
    src: str | Path, dst: str | Path, media_root: str | Path | None = None, labels: str | None = None
) -> int:
    """Write dst (JSONL) from R1-Omni JSON src; return the row count. Any bad record: OrchestratorError, no file."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise OrchestratorError(f"{src} does not exist")
    text = src.read_text()
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        try:
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise OrchestratorError(f"{src}: neither a JSON list nor JSON lines ({err.msg})") from None
    if isinstance(items, dict):
        items = [items]
    root = Path(media_root) if media_root is not None else src.parent
    rows, problems, seen = [], [], set()
    for i, item in enumerate(items):
        where = f"{src}: record {i}" + (
            f" (id {item['id']!r})" if isinstance(item, dict) and "id" in item else ""
        )
        try:
            row = _convert_record(item, i, src.stem, root, labels)
            if row["id"] in seen:
                raise ValueError(f"duplicate id {row['id']!r}")
            seen.add(row["id"])
            rows.append(row)
        except ValueError as err:
            problems.append(f"{where}: {err}")
    if problems:
        more = f"\n... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        raise OrchestratorError(
            f"{src}: {len(problems)} bad record(s), nothing written:\n"
            + "\n".join(problems[:SHOWN_PROBLEMS])
            + more
        )
    if not rows:
        raise OrchestratorError(f"{src} holds no records")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(dst)
    return len(rows)


def _convert_record(item, index: int, stem: str, root: Path, labels: str | None) -> dict:
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")
    turns = item.get("conversations")
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise ValueError("field 'conversations' must be a list of {'from', 'value'}")
    human = next((t.get("value") for t in turns if t.get("from") == "human"), None)
    gpt = next((t.get("value") for t in turns if t.get("from") == "gpt"), None)
    if not isinstance(human, str) or not isinstance(gpt, str):
        raise ValueError("field 'conversations' needs a 'human' and a 'gpt' turn with text values")
    question = _TAGS.sub("", human).strip()
    if not question:
        raise ValueError("the human turn holds no question besides the placeholders")
    match = _ANSWER.search(gpt)
    raw = (match.group(1) if match else gpt).strip()
    label = normalize(raw)
    if label == UNKNOWN:
        raise ValueError(f"unknown label {raw!r}")
    if labels is not None and label not in DATASET_LABELS[labels]:
        raise ValueError(f"label {label!r} is not one of the {labels.upper()} labels")
    video = item.get("video")
    if not isinstance(video, str) or not video.strip():
        raise ValueError("field 'video' must be a clip path")
    row = {"id": str(item.get("id", f"{stem}-{index:06d}")), "prompt": question, "ground_truth": label,
           "dataset": labels or "r1-omni", "video": str((root / video).resolve())}  # fmt: skip
    if isinstance(item.get("audio"), str) and item["audio"].strip():
        row["audio"] = str((root / item["audio"]).resolve())
    elif "<audio>" in human:
        row["audio"] = FROM_VIDEO
    return row


# -- check ----------------------------------------------------------------------------------------
@dataclass
class CheckReport:
    path: Path
    rows: int = 0
    problems: list[str] = field(default_factory=list)
    labels: Counter = field(default_factory=Counter)
    durations: list[float] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    sample_rates: Counter = field(default_factory=Counter)


def inspect_prompt_file(path: str | Path, loader: MediaLoader, labels: str | None = None) -> CheckReport:
    """Validate every row and decode every clip (through the cache); collect problems and spreads."""
    report = CheckReport(Path(path))
    allowed = DATASET_LABELS[labels] if labels else None
    for where, item in read_prompt_rows(path):
        report.rows += 1
        if isinstance(item, OrchestratorError):
            report.problems.append(str(item))
            continue
        if allowed is not None and item.ground_truth not in allowed:
            report.problems.append(f"{where}: unknown label {item.ground_truth!r} (not one of the "
                                   f"{labels.upper()} labels)")  # fmt: skip
            continue
        if item.has_media:
            try:
                info = loader.load(item)["info"]
            except MediaError as err:
                asked = " (the row asks for its audio)" if err.problem == "no audio stream" else ""
                detail = f" ({err.detail})" if err.detail else ""
                report.problems.append(f"{where}: {err.problem}{asked}: {err.path}{detail}")
                continue
            report.durations.append(info.get("duration_s") or info.get("audio_s", 0.0))
            if "source_frames" in info:
                report.frames.append(info["source_frames"])
            if "source_sample_rate" in info:
                report.sample_rates[info["source_sample_rate"]] += 1
        report.labels[item.ground_truth] += 1
    return report


def check_prompt_file(
    path: str | Path, loader: MediaLoader | None = None, labels: str | None = None
) -> list[str]:
    """The FILE:LINE: problem lines of a prompt file (empty when every row and clip is good)."""
    return inspect_prompt_file(path, loader or MediaLoader(), labels).problems


def require_good_prompt_file(data) -> None:
    """At training start (data: DataConfig): a train file with clips must check clean, else stop with its lines."""
    rows = read_prompt_rows(data.train_file)
    if not any(not isinstance(r, OrchestratorError) and r.has_media for _, r in rows):
        return
    problems = check_prompt_file(data.train_file, MediaLoader.from_config(data))
    if problems:
        raise OrchestratorError(
            f"data.train_file {data.train_file} has {len(problems)} bad row(s) "
            "(`erv-grpo data check` lists the same):\n" + "\n".join(problems)
        )


def format_report(report: CheckReport) -> str:
    def spread(values, unit: str, fmt: str) -> str:
        if not values:
            return "-"
        lo, mid, hi = min(values), statistics.median(values), max(values)
        return f"min {lo:{fmt}} {unit}, median {mid:{fmt}} {unit}, max {hi:{fmt}} {unit}"

    good = report.rows - len(report.problems)
    lines = [f"{report.path}: {report.rows} rows, {good} good, {len(report.problems)} bad"]
    lines.append(
        "rows per label: " + (", ".join(f"{k} {v}" for k, v in sorted(report.labels.items())) or "-")
    )
    lines.append(f"clip duration: {spread(report.durations, 's', '.2f')}")
    lines.append(f"video frames: {spread(report.frames, 'frames', '.0f')}")
    rates = ", ".join(f"{rate} Hz x {n}" for rate, n in sorted(report.sample_rates.items()))
    lines.append(f"audio sample rates: {rates or '-'}")
    return "\n".join(lines + report.problems)


def _convert(args: argparse.Namespace) -> int:
    count = convert_r1_omni(args.input, args.output, args.media_root, args.labels)
    print(f"wrote {count} rows to {args.output}")
    return 0


def _check(args: argparse.Namespace) -> int:
    report = inspect_prompt_file(args.file, MediaLoader(args.cache_dir, args.max_pixels), args.labels)
    print(format_report(report))
    return 1 if report.problems else 0
