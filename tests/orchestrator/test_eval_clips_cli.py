"""`erv-grpo eval` on clip prompts: the tiny Omni thinker in a vLLM engine gets each clip's frames and audio,
the metrics come out as for text; a missing clip stops eval naming the file."""

import json

import pytest

from orchestrator.cli import main
from tests.support.clips import copy_rows
from tests.support.tiny_erv import build_tiny_erv
from tests.support.tiny_omni_policy import build_tiny_formatted_omni

pytestmark = pytest.mark.slow


def test_eval_on_clip_prompts_scores_every_clip(clip_set, tmp_path, capsys, monkeypatch):
    from rollout.engine import VllmEngine

    seen, real = [], VllmEngine.generate

    def spy(self, prompts, **kw):  # eval runs its engine in this process
        groups = real(self, prompts, **kw)
        seen.append((kw.get("media"), groups))
        return groups

    monkeypatch.setattr(VllmEngine, "generate", spy)
    policy = build_tiny_formatted_omni(tmp_path / "omni")
    erv = build_tiny_erv(tmp_path / "erv")
    out = tmp_path / "eval"
    code = main(["eval", "--config", "configs/tiny-omni.yaml", f"learner.model={policy}", f"reward.model_dir={erv}",
                 f"data.media_cache_dir={tmp_path / 'media'}", "--prompts", str(clip_set.test), "--output", str(out)])  # fmt: skip
    assert code == 0
    result = json.loads((out / "eval_omni.json").read_text())  # named after the model folder
    rows = clip_set.rows("test")[:8]
    assert [s["id"] for s in result["samples"]] == [r["id"] for r in rows]
    assert set(result["metrics"]) >= {"WAR", "UAR", "EEA", "EPC", "FCR"}
    ((media, groups),) = seen
    assert len(media) == len(rows) and all(m["video"].ndim == 4 and m["audio"].ndim == 1 for m in media)
    assert all("<|VIDEO|>" in g.prompt_text and "<|AUDIO|>" in g.prompt_text for g in groups)
    assert any(s["prediction"] != "unknown" for s in result["samples"])  # the format-fitted thinker answers
    assert "| model | EEA | FCR | EPC | WAR | UAR |" in capsys.readouterr().out


def test_eval_names_a_missing_clip(clip_set, tmp_path):
    prompts = copy_rows(clip_set, tmp_path, count=2, split="test")
    (tmp_path / "clips" / clip_set.rows("test")[1]["video"].split("/")[-1]).unlink()
    with pytest.raises(SystemExit, match="missing file"):
        main(["eval", "--config", "configs/tiny-omni.yaml", f"learner.model={tmp_path}", f"reward.model_dir={tmp_path}",
              f"data.media_cache_dir={tmp_path / 'media'}", "--prompts", str(prompts)])  # fmt: skip
