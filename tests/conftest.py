"""Shared fixtures. `../shared` (real sample data) sits beside the checkout on developer machines
and CI only; tests that need it skip cleanly in a fresh clone."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The `../shared` folder beside the repository root, or skip the test."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"real sample data not available: {SHARED / 'data'} is absent")
    return SHARED
