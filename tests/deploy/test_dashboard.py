"""The committed Grafana dashboard is exactly what deploy/monitoring/dashboard.py generates, and
it has the panels the runbook (deploy/README.md) points to."""

from __future__ import annotations

import importlib.util
import json

from tests.deploy.conftest import DEPLOY


def _generator():
    spec = importlib.util.spec_from_file_location("erv_dashboard", DEPLOY / "monitoring/dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_json_equals_generator_output():
    generator = _generator()
    committed = (DEPLOY / "monitoring/grafana/erv-grpo.json").read_text()
    assert committed == generator.render(), "run `python deploy/monitoring/dashboard.py` and commit the JSON"


def test_dashboard_panels():
    board = json.loads((DEPLOY / "monitoring/grafana/erv-grpo.json").read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    titles = {p["title"] for p in panels}
    for wanted in ("Reward throughput", "Queue depth (sentences waiting)", "Model batch size (sentences)",
                   "Request latency", "Errors by code", "Reward components", "KL to reference / clip fraction",
                   "Time per training phase (last step)", "Rollout tokens/s per worker"):  # fmt: skip
        assert wanted in titles
    assert all(p["targets"] and p["datasource"] == "${datasource}" for p in panels)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    # No two panels overlap on the 24-column grid.
    cells = set()
    for p in board["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        new = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & new, p["title"]
        cells |= new
