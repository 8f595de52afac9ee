"""SFT cold start: schedule by hand, encoding, learning the format on a tiny model, CLI, bench."""

import argparse
import json
import math

import pytest
import torch

from common.errors import ConfigError
from policy.cli import register
from policy.config import SFTConfig
from policy.model_loading import load_tokenizer
from policy.sft import encode, lr_scheduler, read_examples, run_sft
from reward_service.core.reward import FORMAT_RE

LABELS = ["happy", "sad", "angry", "fear"]


def _parser():
    parser = argparse.ArgumentParser(prog="erv-grpo")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench").add_subparsers(dest="bench_command", required=True)
    register(sub, {"bench": bench})
    return parser


def _write_set(path, n, offset=0):
    with open(path, "w") as f:
        for i in range(n):
            label = LABELS[(i + offset) % len(LABELS)]
            row = {
                "messages": [{"role": "user", "content": f"Subtitle: the man looks {label}. Which emotion?"}],
                "target": f"<think>The man looks {label}.</think><answer>{label}</answer>",
                "label": label,
            }
            f.write(json.dumps(row) + "\n")
    return path


def _lr_factors(total: int, warmup_ratio: float, schedule: str, updates: int) -> list[float]:
    """The lr factor of each of `updates` optimizer updates under lr_scheduler (base lr 1)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = lr_scheduler(optimizer, total, warmup_ratio, schedule)
    factors = []
    for _ in range(updates):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return factors


def test_lr_schedule_by_hand():
    # 10 steps, warm-up ceil(0.2 * 10) = 2 steps: 1/2, 1; then cosine over the 8 left
    got = _lr_factors(10, 0.2, "cosine", 11)
    assert got[0] == 0.5 and got[1] == 1.0 and got[2] == 1.0
    assert got[6] == pytest.approx(0.5)  # half way: (1 + cos(pi/2)) / 2
    assert got[4] == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert got[10] == pytest.approx(0.0)
    assert _lr_factors(10, 0.2, "constant", 8)[7] == 1.0


@pytest.mark.parametrize("total", [1, 2, 7, 40])
@pytest.mark.parametrize("warmup_ratio", [0.0, 0.03, 0.5, 1.0])
def test_lr_schedule_is_the_recipes_over_every_update(total, warmup_ratio):
    # the recipe: (s + 1) / W for the W warm-up updates, then cosine from 1 towards 0 (or 1)
    warmup = math.ceil(warmup_ratio * total)
    for schedule in ("cosine", "constant"):
        want = [
            (s + 1) / warmup
            if s < warmup
            else 1.0
            if schedule == "constant"
            else (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))) / 2
            for s in range(total)
        ]
        assert _lr_factors(total, warmup_ratio, schedule, total) == pytest.approx(want, abs=1e-12)


def test_encode_appends_eos_and_cuts_the_prompt_first(tiny_qwen2_dir):
    tok = load_tokenizer(str(tiny_qwen2_dir))
    row = {"messages": [{"role": "user", "content": "word " * 50}], "target": "<answer>sad</answer>"}
    prompt, target = encode(tok, row, max_length=32)
    assert target[-1] == tok.eos_token_id
    assert tok.decode(target[:-1]) == "<answer>sad</answer>"
    assert len(prompt) + len(target) == 32
    full, _ = encode(tok, row, max_length=4096)
    assert prompt == full[-len(prompt) :]  # the prompt's end (the generation prompt) is kept


def test_read_examples_names_the_bad_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [], "target": "x"}\n{"target": "y"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_examples(bad)


@pytest.mark.slow
def test_sft_teaches_the_format_on_a_tiny_model(tiny_qwen2_dir, tmp_path):
    train = _write_set(tmp_path / "train.jsonl", 16)
    heldout = _write_set(tmp_path / "heldout.jsonl", 8, offset=1)
    config = SFTConfig(
        model=str(tiny_qwen2_dir),
        train_file=str(train),
        eval_file=str(heldout),
        output_dir=str(tmp_path / "out"),
        epochs=40,
        lr=3e-3,
        batch_size=8,
        micro_batch_size=4,
        eval_max_new_tokens=24,
        device="cpu",
    )
    report = run_sft(config, log=lambda _: None)
    assert report["steps"] == 80
    assert report["last_loss"] < report["first_loss"] / 5
    assert report["heldout"]["format_rate"] == 1.0, report["heldout"]["samples"]
    assert all(FORMAT_RE.fullmatch(s) for s in report["heldout"]["samples"])
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "out" / "sft_report.json").read_text())["steps"] == 80


def test_sft_cli_reports_config_errors(tmp_path, capsys):
    parser = _parser()
    with pytest.raises(ConfigError, match="does not exist"):
        args = parser.parse_args(["sft", "--config", str(tmp_path / "none.yaml")])
        args.func(args)
    cfg = tmp_path / "sft.yaml"
    cfg.write_text("model: m\ntrain_file: t\noutput_dir: o\nepochz: 3\n")
    args = parser.parse_args(["sft", "--config", str(cfg)])
    with pytest.raises(ConfigError, match="epochz"):
        args.func(args)
    cfg.write_text("model: m\ntrain_file: t\noutput_dir: o\n")
    args = parser.parse_args(["sft", "--config", str(cfg), "lr=-1"])
    with pytest.raises(ConfigError, match="lr"):
        args.func(args)
    args = parser.parse_args(["sft", "--config", str(cfg), "lr"])
    with pytest.raises(ConfigError, match="key=value"):
        args.func(args)
    args = parser.parse_args(["sft", "--config", str(cfg)])
    with pytest.raises(ConfigError, match="train_file t does not exist"):
        args.func(args)


@pytest.mark.slow
def test_sft_cli_runs_and_saves(tiny_qwen2_dir, tmp_path, capsys):
    train = _write_set(tmp_path / "train.jsonl", 4)
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(f"model: {tiny_qwen2_dir}\ntrain_file: {train}\noutput_dir: {tmp_path / 'out'}\n")
    args = _parser().parse_args(["sft", "--config", str(cfg), "epochs=1", "batch_size=4"])
    assert args.func(args) == 0
    assert "saved" in capsys.readouterr().out
    assert (tmp_path / "out" / "config.json").is_file()


def test_bench_learner_writes_json(tiny_qwen2_dir, tmp_path):
    out = tmp_path / "learner.json"
    args = _parser().parse_args(
        ["bench", "learner", "--model", str(tiny_qwen2_dir), "--group-size", "4", "--completion-length", "8"]
        + ["--prompt-length", "6", "--output", str(out), "--device", "cpu"]
    )
    assert args.func(args) == 0
    result = json.loads(out.read_text())
    assert result["group_size"] == 4 and result["completion_length"] == 8
    assert result["tokens_per_second"] > 0 and result["peak_memory_mb"] > 0
    assert result["completion_tokens_per_second"] * 14 == pytest.approx(result["tokens_per_second"] * 8)


def test_prepared_folders_are_reused_without_work(tmp_path, monkeypatch):
    from policy import embedded, sft

    (tmp_path / sft.SFT_FOLDER).mkdir()
    (tmp_path / sft.SFT_FOLDER / sft.REPORT_FILE).write_text("{}")
    (tmp_path / embedded.FOLDER_NAME).mkdir()
    (tmp_path / embedded.FOLDER_NAME / embedded.MARKER).write_text("{}")

    def fail(*args, **kwargs):
        raise AssertionError("a finished folder must not be rebuilt")

    monkeypatch.setattr(sft, "run_sft", fail)
    monkeypatch.setattr(embedded, "gguf_path", fail)
    assert sft.prepare_sft_policy(tmp_path) == tmp_path / sft.SFT_FOLDER
    assert embedded.prepare_policy(tmp_path) == tmp_path / embedded.FOLDER_NAME
