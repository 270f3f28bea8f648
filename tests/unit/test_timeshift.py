"""The shifted run of `make test` really runs in the shifted time (tests/timeshift/README.md)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest


@pytest.mark.skipif(
    "TF_TIMESHIFT_S" not in os.environ, reason="only in the shifted run (make test-timeshift)"
)
def test_the_wall_clock_is_shifted(tmp_path: Path) -> None:
    shift_s = int(os.environ["TF_TIMESHIFT_S"])
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    kernel_now = probe.stat().st_mtime  # the kernel's clock: not shifted
    assert abs(time.time() - kernel_now - shift_s) < 60
