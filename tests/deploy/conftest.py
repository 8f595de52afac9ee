"""Shared fixtures of the deploy/ checks: repository paths and the rendered overlays."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.kustomize_lite import build

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("small", "a100")


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """{overlay name: rendered objects}."""
    return {name: build(DEPLOY / "k8s" / "overlays" / name) for name in OVERLAYS}
