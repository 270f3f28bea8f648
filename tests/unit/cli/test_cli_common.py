"""The shared presenters: a page says when more rows exist; a command opens one runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.table import Table

from trustfleet.cli import _common
from trustfleet.errors import TrustFleetError


def _page(capsys: pytest.CaptureFixture[str], *, json_out: bool, cursor: str | None) -> str:
    rows = [{"id": "dev-1"}, {"id": "dev-2"}]
    _common.present_page(
        "devices", rows, next_cursor=cursor, json_out=json_out,
        table=Table("device"), cells=lambda r: (r["id"],),
    )  # fmt: skip
    return capsys.readouterr().out


@pytest.mark.parametrize("cursor", [None, "2"])
def test_a_json_page_carries_its_next_cursor(
    capsys: pytest.CaptureFixture[str], cursor: str | None
) -> None:
    doc = json.loads(_page(capsys, json_out=True, cursor=cursor))
    assert doc == {"devices": [{"id": "dev-1"}, {"id": "dev-2"}], "next_cursor": cursor}


def test_a_table_page_says_how_to_see_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--cursor 2" in _page(capsys, json_out=False, cursor="2")
    assert "--cursor" not in _page(capsys, json_out=False, cursor=None)


def test_present_done_prints_json_or_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    _common.present_done({"a": 1}, json_out=True, line="done")
    assert json.loads(capsys.readouterr().out) == {"a": 1}
    _common.present_done({"a": 1}, json_out=False, line="done")
    assert capsys.readouterr().out.strip() == "✓ done"


def test_command_runtime_closes_the_runtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from trustfleet import settings
    from trustfleet.services import runtime, upgrade

    closed: list[bool] = []

    class FakeRuntime:
        @classmethod
        def open(cls, _settings: Any) -> FakeRuntime:
            return cls()

        def close(self) -> None:
            closed.append(True)

    from trustfleet.services import audit

    refused: list[str] = []
    monkeypatch.setattr(settings, "load_server_settings", lambda home: home)
    monkeypatch.setattr(runtime, "Runtime", FakeRuntime)
    monkeypatch.setattr(upgrade, "upgrade_store", lambda _settings, *, now: None)
    monkeypatch.setattr(
        audit, "record_refused_command", lambda _rt, *, error, **_: refused.append(str(error))
    )
    with pytest.raises(TrustFleetError), _common.command_runtime(tmp_path):
        raise TrustFleetError("boom")
    assert closed == [True]
    assert refused == ["boom"]  # a refused operator command is an entry of the audit log
