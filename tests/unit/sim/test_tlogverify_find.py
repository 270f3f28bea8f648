"""Where the demo finds the independent Go verifier, and why it says it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustfleet.errors import Unavailable
from trustfleet.sim.tlogverify import GO_HINT, PEER_DIR, find_tlogverify


def test_without_go_the_reason_says_so_and_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Unavailable, match="go is not installed") as caught:
        find_tlogverify()
    assert caught.value.hint == GO_HINT


def test_without_the_sources_the_reason_names_where_it_looked(tmp_path: Path) -> None:
    if not any(PEER_DIR.glob("*.go")):
        pytest.skip("not a source checkout")
    fake_go = tmp_path / "bin" / "go"
    fake_go.parent.mkdir()
    fake_go.write_text("#!/bin/sh\nexit 1\n")
    fake_go.chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(fake_go.parent))
        with pytest.raises(Unavailable, match=f"sources are not at {tmp_path}"):
            find_tlogverify(tmp_path)
