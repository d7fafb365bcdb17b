"""Shared fixtures: real media from ../shared, extracted once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("DFE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FACES = SHARED / "faces"
VIDEOS = SHARED / "videos"


def pytest_collection_modifyitems(config, items):
    if not SHARED.is_dir():
        skip = pytest.mark.skip(reason=f"shared test media not found at {SHARED}")
        for item in items:
            if "shared" in item.fixturenames or "extracted" in item.fixturenames:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def shared() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def extracted(tmp_path_factory) -> Path:
    """Tables of every shared video and London photo (neutral photos as references)."""
    from dfe.extraction import ExtractOptions, extract

    out = tmp_path_factory.mktemp("extracted")
    report = extract([VIDEOS, FACES / "london"], out, ExtractOptions(neutral="auto", progress=False))
    assert report.ok, [r.error for r in report.failed]
    return out
