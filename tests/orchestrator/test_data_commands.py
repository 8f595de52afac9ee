"""`erv-grpo data convert` (R1-Omni JSON) and `erv-grpo data check` (each kind of bad row, file:line, exit 1),
and the same check refusing a bad clip file at training start."""

import json
import shutil

import pytest

from orchestrator.cli import main
from orchestrator.config import DataConfig
from orchestrator.data import load_prompts
from orchestrator.data_commands import check_prompt_file, convert_r1_omni, require_good_prompt_file
from orchestrator.errors import OrchestratorError
from orchestrator.media_loader import MediaLoader
from tests.support.clips import copy_rows, empty_video, one_track, write_rows

HUMAN = "<video>\n<audio>\nAs an emotional recognition expert; which emotion is the most obvious to you?"


def _r1(video: str, answer: str, **extra) -> dict:
    return {"video": video, "conversations": [{"from": "human", "value": HUMAN},
                                              {"from": "gpt", "value": answer}], **extra}  # fmt: skip


def test_convert_r1_omni_json(tmp_path, clip_set):
    media = tmp_path / "dfew"
    media.mkdir()
    clip = clip_set.dir / clip_set.rows()[0]["video"]
    shutil.copyfile(clip, media / "0001.mp4")
    src = tmp_path / "r1.json"
    src.write_text(json.dumps([
        _r1("0001.mp4", "<think>She smiles widely.</think>\n<answer>Happiness</answer>", id="clip-1"),
        _r1("sub/0002.mp4", "sad"),  # a bare label, no id
    ]))  # fmt: skip
    out = tmp_path / "out" / "train.jsonl"
    assert main(["data", "convert", "--from", "r1-omni", str(src), str(out), "--media-root", str(media),
                 "--labels", "dfew"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [
        {"id": "clip-1", "prompt": HUMAN.split("\n")[2], "ground_truth": "happy", "dataset": "dfew",
         "video": str(media / "0001.mp4"), "audio": "from_video"},
        {"id": "r1-000001", "prompt": HUMAN.split("\n")[2], "ground_truth": "sad", "dataset": "dfew",
         "video": str(media / "sub/0002.mp4"), "audio": "from_video"},
    ]  # fmt: skip
    records = load_prompts(out)  # the converted file is a valid prompt file
    assert records[0].video == str(media / "0001.mp4") and records[0].audio_path == records[0].video
    # Without --media-root, paths start from the JSON's folder; no <audio> tag: no audio.
    src.write_text(json.dumps([{"video": "dfew/0001.mp4", "conversations": [
        {"from": "human", "value": "<video>\nWhich emotion?"}, {"from": "gpt", "value": "<answer>fear</answer>"}]}]))  # fmt: skip
    convert_r1_omni(src, out)
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["video"] == str(media / "0001.mp4") and "audio" not in row and row["dataset"] == "r1-omni"


def test_convert_names_every_bad_record_and_writes_nothing(tmp_path):
    src = tmp_path / "r1.json"
    src.write_text(json.dumps([
        _r1("a.mp4", "<answer>happy</answer>"),
        _r1("b.mp4", "<answer>bored</answer>"),
        _r1("c.mp4", "<answer>contempt</answer>"),  # MAFW, not DFEW
        {"conversations": [{"from": "human", "value": HUMAN}, {"from": "gpt", "value": "sad"}]},
    ]))  # fmt: skip
    out = tmp_path / "out.jsonl"
    with pytest.raises(OrchestratorError) as err:
        convert_r1_omni(src, out, labels="dfew")
    lines = str(err.value).splitlines()
    assert lines[1:] == [
        f"{src}: record 1: unknown label 'bored'",
        f"{src}: record 2: label 'contempt' is not one of the DFEW labels",
        f"{src}: record 3: field 'video' must be a clip path",
    ]
    assert not out.exists()
    with pytest.raises(SystemExit, match="erv-grpo: error: .*3 bad record"):
        main(["data", "convert", "--from", "r1-omni", str(src), str(out), "--labels", "dfew"])


def test_check_finds_each_kind_of_bad_row(tmp_path, clip_set, capsys):
    good = json.loads(copy_rows(clip_set, tmp_path, count=2).read_text().splitlines()[0])
    clip = tmp_path / good["video"]
    silent = one_track(clip, tmp_path / "silent.mp4", "video")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 50)
    empty = empty_video(tmp_path / "empty.avi")
    audio_only = one_track(clip, tmp_path / "audio_only.mp4", "audio")
    rows = [
        good,  # 1: good
        good | {"id": "2", "video": "nowhere.mp4"},  # 2: missing file
        good | {"id": "3", "video": str(audio_only)},  # 3: no video stream
        good | {"id": "4", "video": str(silent)},  # 4: no audio stream, audio asked for
        good | {"id": "5", "video": str(silent), "audio": None},  # 5: good (video only)
        good | {"id": "6", "video": str(garbage)},  # 6: undecodable
        good | {"id": "7", "video": str(empty), "audio": None},  # 7: zero frames
        good | {"id": "8", "ground_truth": "bored"},  # 8: unknown label
    ]
    path = write_rows(tmp_path / "check.jsonl", rows)
    assert main(["data", "check", str(path), "--cache-dir", str(tmp_path / "cache")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: 8 rows, 2 good, 6 bad"
    assert out[1] == f"rows per label: {good['ground_truth']} 2"
    assert out[2] == "clip duration: min 2.00 s, median 2.00 s, max 2.00 s"
    assert out[3] == "video frames: min 30 frames, median 30 frames, max 30 frames"
    assert out[4] == "audio sample rates: 22050 Hz x 1"
    problems = out[5:]
    expected = [
        (2, f"missing file: {tmp_path / 'nowhere.mp4'}"),
        (3, f"no video stream: {audio_only}"),
        (4, f"no audio stream (the row asks for its audio): {silent}"),
        (6, f"undecodable: {garbage}"),
        (7, f"zero frames: {empty}"),
        (8, "field 'ground_truth': unknown emotion 'bored'"),
    ]
    assert len(problems) == len(expected)
    for line, (n, text) in zip(problems, expected, strict=True):
        assert line.startswith(f"{path}:{n}: {text}"), line
    # The function training calls gives the same lines; a clean file gives none and exit 0.
    assert check_prompt_file(path, MediaLoader(tmp_path / "cache")) == problems
    clean = write_rows(tmp_path / "clean.jsonl", [rows[0], rows[4]])
    assert check_prompt_file(clean, MediaLoader(tmp_path / "cache")) == []
    assert main(["data", "check", str(clean), "--cache-dir", str(tmp_path / "cache")]) == 0


def test_training_refuses_a_bad_clip_file_at_start(tmp_path, clip_set):
    path = copy_rows(clip_set, tmp_path, count=2)
    records = load_prompts(path)
    data = DataConfig(train_file=str(path), media_cache_dir=str(tmp_path / "cache"))
    require_good_prompt_file(data)  # clean: no error
    (tmp_path / records[1].video).unlink()
    with pytest.raises(OrchestratorError, match=f"{path}:2: missing file: {records[1].video}"):
        require_good_prompt_file(data)
    # A text-only file is not decoded at all (no cache folder appears).
    require_good_prompt_file(
        DataConfig(train_file="data/prompts/test.jsonl", media_cache_dir=str(tmp_path / "x"))
    )
    assert not (tmp_path / "x").exists()
