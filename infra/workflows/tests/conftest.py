"""Fixtures shared by the workflow tests: one moto server per module, stopped by pid."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workflows")


@pytest.fixture(scope="module")
def moto(work: Path):
    """moto's server (motoserver.py) with no Lambda emulator; yields its endpoint URL."""
    started, endpoint = harness.start_moto(work)
    try:
        yield endpoint
    finally:
        started.stop()
