"""`erv-grpo eval` on tiny models: vLLM generation, ERV judge, two policies compared in one engine (weights swapped)."""

import json

import pytest

from orchestrator.cli import main
from tests.support.tiny_erv import build_tiny_erv
from tests.support.tiny_policy import build_tiny_formatted_policy

pytestmark = pytest.mark.slow


def test_eval_compares_two_policies_and_writes_the_table(tmp_path, capsys):
    a = build_tiny_formatted_policy(tmp_path / "a", steps=60, seed=0)
    b = build_tiny_formatted_policy(tmp_path / "b", steps=60, seed=1)
    erv = build_tiny_erv(tmp_path / "erv")
    out = tmp_path / "eval"
    code = main(["eval", "--config", "configs/tiny.yaml", f"learner.model={a}", f"reward.model_dir={erv}",
                 "eval.limit=6", "--model", f"before={a}", "--model", f"after={b}", "--output", str(out)])  # fmt: skip
    assert code == 0
    table = (out / "eval.md").read_text()
    assert table.splitlines()[0] == "| model | EEA | FCR | EPC | WAR | UAR |"
    assert "| before |" in table and "| after |" in table
    before = json.loads((out / "eval_before.json").read_text())
    after = json.loads((out / "eval_after.json").read_text())
    assert len(before["samples"]) == 6 and {s["id"] for s in before["samples"]} == {
        s["id"] for s in after["samples"]
    }
    # the tiny policies answer in the format: every prediction is parsed to a label
    assert all(s["prediction"] != "unknown" for s in before["samples"])
    # different weights in the same engine give different completions
    assert [s["completion"] for s in before["samples"]] != [s["completion"] for s in after["samples"]]
    assert table in capsys.readouterr().out


def test_eval_names_a_missing_model_folder(tmp_path):
    with pytest.raises(SystemExit, match="--model x=/no/where: /no/where is not a model folder"):
        main(["eval", "--config", "configs/tiny.yaml", "learner.model=/m", f"reward.model_dir={tmp_path}",
              "--model", "x=/no/where"])  # fmt: skip
