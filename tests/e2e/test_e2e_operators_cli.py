"""Operators and API tokens through the CLI: ``server init`` makes the first admin, ``user`` and
``token`` manage accounts and tokens, and what they print works (a login, a token)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from support.server import free_port, run_cli
from trustfleet.errors import Unauthenticated
from trustfleet.services import auth
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

pytestmark = pytest.mark.e2e

ORIGIN = "https POST /console/login from 127.0.0.1:5000"


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``server init --json`` of a new home: its summary, with the admin's one-time password."""
    home = tmp_path_factory.mktemp("operators") / "home"
    summary = _json(run_cli("server", "init", "--home", home, "--api-port", str(free_port()),
                            "--json"))  # fmt: skip
    made: dict[str, Any] = {**summary, "home_path": home}
    return made


@pytest.fixture
def rt(made: dict[str, Any]) -> Iterator[Runtime]:
    runtime = Runtime.open(load_server_settings(made["home_path"]))
    try:
        yield runtime
    finally:
        runtime.close()


def _cli(made: dict[str, Any], *args: str | Path) -> Any:
    return _json(run_cli(*args, "--home", made["home_path"], "--json"))


def _now() -> datetime:
    return datetime.now(UTC)


def test_server_init_makes_an_admin_with_a_one_time_password(
    made: dict[str, Any], rt: Runtime
) -> None:
    assert made["admin_login"] == "admin" and len(made["admin_password"]) >= 20
    step = auth.login_password(rt, login="admin", password=made["admin_password"],
                               origin=ORIGIN, now=_now())  # fmt: skip
    assert step.view.stage == "mfa-enroll"
    admin = _cli(made, "user", "list")["operators"][0]
    assert (admin["login"], admin["role"], admin["must_change_password"]) == (
        "admin",
        "admin",
        True,
    )


def test_server_init_takes_the_admin_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "admin.pw"
    secret.write_text("a long enough password\n")
    home = tmp_path / "home"
    result = run_cli("server", "init", "--home", home, "--api-port", str(free_port()),
                     "--admin-password-file", secret)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "first operator: admin" in result.stdout and "one-time" not in result.stdout
    runtime = Runtime.open(load_server_settings(home))
    try:
        step = auth.login_password(runtime, login="admin", password="a long enough password",
                                   origin=ORIGIN, now=_now())  # fmt: skip
        assert step.view.principal.role == "admin"
    finally:
        runtime.close()
    short = tmp_path / "short.pw"
    short.write_text("short\n")
    refused = run_cli("server", "init", "--home", tmp_path / "h2", "--admin-password-file", short)
    assert refused.returncode == 2 and "12 to 256" in refused.stderr
    assert not (tmp_path / "h2").exists()


def test_users_are_added_listed_disabled_enabled_and_changed(
    made: dict[str, Any], rt: Runtime, tmp_path: Path
) -> None:
    added = _cli(made, "user", "add", "carol", "--role", "auditor")
    assert added["must_change_password"] and len(added["one_time_password"]) >= 20
    password_file = tmp_path / "dave.pw"
    password_file.write_text("dave's long password\n")
    dave = _cli(made, "user", "add", "dave", "--role", "fleet-operator",
                "--password-file", password_file)  # fmt: skip
    assert "one_time_password" not in dave and not dave["must_change_password"]
    step = auth.login_password(rt, login="carol", password=added["one_time_password"],
                               origin=ORIGIN, now=_now())  # fmt: skip
    assert _cli(made, "user", "disable", "carol")["disabled"]
    with pytest.raises(Unauthenticated):
        auth.session_view(rt, step.session_secret, now=_now())
    assert not _cli(made, "user", "enable", "carol")["disabled"]
    assert _cli(made, "user", "set-role", "carol", "security-officer")["role"] == "security-officer"
    assert _cli(made, "user", "reset-mfa", "carol")["totp"] is False
    page = _cli(made, "user", "list", "--limit", "1")
    assert len(page["operators"]) == 1 and page["next_cursor"] == "1"
    rest = _cli(made, "user", "list", "--cursor", page["next_cursor"])
    assert {"carol", "dave"} <= {o["login"] for o in rest["operators"]}
    bad = run_cli("user", "set-role", "dave", "metrics", "--home", made["home_path"])
    assert bad.returncode == 2 and "not an operator role" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_token_is_shown_once_works_and_stops_when_revoked(
    made: dict[str, Any], rt: Runtime
) -> None:
    created = _cli(made, "token", "create", "--owner", "admin", "--name", "scraper",
                   "--role", "metrics", "--ttl", "30d")  # fmt: skip
    token = created["token"]
    assert token.startswith(f"tf_{created['id']}_")
    assert auth.authenticate_token(rt, token, now=_now()).role == "metrics"
    listed = _cli(made, "token", "list", "--owner", "admin")["tokens"]
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    assert _cli(made, "token", "revoke", created["id"])["revoked_at"] is not None
    with pytest.raises(Unauthenticated):
        auth.authenticate_token(rt, token, now=_now())
    too_long = run_cli("token", "create", "--owner", "admin", "--name", "x", "--role", "admin",
                       "--ttl", "366d", "--home", made["home_path"])  # fmt: skip
    assert too_long.returncode == 2 and "token_max_ttl_s" in too_long.stderr
