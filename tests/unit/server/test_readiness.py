"""``/readyz``'s verdict from the status file (pure): fresh, complete, every component up."""

from __future__ import annotations

import json

import pytest

from trustfleet.server._readiness import Component, readiness_from

NOW = 1_000_000.0


def _status(*components: Component, at: float = NOW) -> bytes:
    return json.dumps(
        {
            "written_at": at,
            "pid": 1,
            "components": [{"name": c.name, "up": c.up, "detail": c.detail} for c in components],
        }
    ).encode()


UP = (Component("store", True), Component("broker", True), Component("workers.https", True))
CASES = [
    ("all_up", _status(*UP), True, []),
    ("ingest_down", _status(*UP, Component("workers.ingest", False)), False, ["workers.ingest"]),
    ("no_status_file", None, False, ["supervisor"]),
    ("stale_status", _status(*UP, at=NOW - 30), False, ["supervisor"]),
    ("status_from_the_future", _status(*UP, at=NOW + 30), False, ["supervisor"]),
    ("not_json", b"{", False, ["supervisor"]),
    ("up_is_not_true", _status(Component("store", True)).replace(b"true", b'"yes"'), False,
     ["store"]),
    ("no_components", _status(), False, []),
    ("oversized", b" " * (64 * 1024 + 1), False, ["supervisor"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "ready", "down"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_readiness_verdict(data: bytes | None, ready: bool, down: list[str]) -> None:
    verdict = readiness_from(data, now=NOW, stale_s=10.0)
    assert verdict.ready is ready
    assert verdict.to_document()["down"] == down
