"""Fixtures of the reward_service tests: tiny exported ERV folders, built once per test session."""

from __future__ import annotations

import pytest

from tests.support.tiny_erv import build_tiny_erv


@pytest.fixture(scope="session")
def tiny_erv_dir(tmp_path_factory):
    """Exported tiny random BERT ERV, canonical 11-label head (torch source in tiny_erv_dir / "hf")."""
    return build_tiny_erv(tmp_path_factory.mktemp("tiny_erv"), head="canonical")


@pytest.fixture(scope="session")
def tiny_goemotions_erv_dir(tmp_path_factory):
    """Exported tiny random RoBERTa ERV with the 28 GoEmotions outputs (torch source in .../hf)."""
    return build_tiny_erv(tmp_path_factory.mktemp("tiny_goemotions_erv"), head="goemotions")
