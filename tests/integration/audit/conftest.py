"""Fixtures of the audit-log tests.

* ``tlogverify``: the path of the independent Go verifier (tests/peers/tlogverify), built once
  per test run and cached by the hash of its sources (support/tlogverify.py); skipped only when
  Go is not installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.tlogverify import GO_HINT, build_tlogverify, cache_root


@pytest.fixture(scope="session")
def tlogverify() -> Path:
    """The built ``tlogverify`` binary (skip: Go is not installed)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip(f"go is not installed ({GO_HINT})")
    return build_tlogverify(cache_root(), go=go)
