"""Location of the real NSE files in ../shared/data (never committed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def require_shared_data(*relative: str) -> Path:
    """Return SHARED_DATA / relative, or skip the test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*relative)
    if not path.exists():
        pytest.skip(f"real NSE data not found at {path} (set SHARED_DATA_DIR or check out ../shared)")
    return path
