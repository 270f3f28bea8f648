"""What the agent honours of an ``update`` command, and how it answers without a boot chain."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from trustfleet.agent.settings import DeviceSettings, ota_urls
from trustfleet.agent.updater.worker import OtaWorker, UpdateArgs
from trustfleet.ota.status_report import parse_ota_status

ARGS = {
    "only-version": ({"version": "2.0.0"}, "2.0.0", None, []),
    "version-and-campaign": ({"version": "2.0.0", "campaign": "c-42"}, "2.0.0", "c-42", []),
    "url-path-hash-bytes-ignored": (
        {"url": "https://evil/x", "path": "/etc/shadow", "sha256": "0" * 64, "image": "AAAA"},
        None,
        None,
        ["image", "path", "sha256", "url"],
    ),
    "non-string-version-kept-as-text": ({"version": 2}, "2", None, []),
    "long-version-truncated": ({"version": "9" * 500}, "9" * 40, None, []),
    "bad-campaign-dropped": ({"campaign": "x" * 500}, None, None, []),
    "campaign-with-slash-dropped": ({"campaign": "../c"}, None, None, []),
}


@pytest.mark.parametrize("case", list(ARGS), ids=list(ARGS))
def test_only_version_and_campaign_are_honoured(case: str) -> None:
    args, version, campaign, ignored = ARGS[case]
    parsed = UpdateArgs(args)
    assert (parsed.version, parsed.campaign, parsed.ignored) == (version, campaign, ignored)


def _settings(tmp_path: Path) -> DeviceSettings:
    return DeviceSettings(
        directory=tmp_path,
        device={"id": "dev-1", "model": "sim-v1"},
        identity={"key": "pkcs11:token=t;object=k"},
        server={"est_url": "https://fleet.example:8443/.well-known/est"},
    )


def test_a_device_without_a_boot_chain_refuses_with_a_reason(tmp_path: Path) -> None:
    worker = OtaWorker(
        _settings(tmp_path),
        boot=None,
        now=lambda: datetime.now(UTC),
        notify=lambda: None,
        link_connected=lambda: True,
        identity_ok=lambda: True,
    )
    answer = worker.answer_update("c-1", {"version": "2.0.0", "campaign": "camp"})
    assert answer["ok"] is False and "boot chain" in answer["error"]
    (report,) = worker.drain()
    status = parse_ota_status(report)
    assert (status.state, status.code, status.campaign) == ("refused", "ota.no_boot_chain", "camp")


def test_ota_urls_default_to_the_est_host(tmp_path: Path) -> None:
    assert ota_urls(_settings(tmp_path)) == (
        "https://fleet.example:8443/tuf/metadata/",
        "https://fleet.example:8443/tuf/targets/",
    )
