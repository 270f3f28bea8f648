"""The agent's re-key in pure parts: the command's arguments, the new key's name, the key check."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from trustfleet.agent._rekeytoken import next_key
from trustfleet.agent._tls import TokenKey
from trustfleet.agent.certfacts import CertFacts
from trustfleet.agent.rekey import KEY_STATE_FILE, answer_reenroll, key_matches, pending_path
from trustfleet.configfile.device import DeviceSettings
from trustfleet.errors import InvalidInput
from trustfleet.keystore import Pkcs11Uri
from trustfleet.services.rekey import select_devices
from trustfleet.wire import Command


def _settings(directory: Path) -> DeviceSettings:
    return DeviceSettings.model_validate({
        "directory": directory,
        "device": {"id": "dev-rekeyunit0001", "model": "sim-v1"},
        "identity": {"key": "pkcs11:token=tf-device;object=identity;type=private"},
        "server": {"est_url": "https://localhost:1/.well-known/est"},
    })  # fmt: skip


def _facts(spki: bytes) -> CertFacts:
    from datetime import UTC, datetime

    return CertFacts(serial=1, not_before=datetime(2030, 1, 1, tzinfo=UTC),
                     not_after=datetime(2031, 1, 1, tzinfo=UTC), spki=spki)  # fmt: skip


def test_the_new_key_is_named_by_its_own_label_in_the_uri() -> None:
    """Regression: the CSR was signed through the URI, which still named the old key."""
    uri = Pkcs11Uri.parse("pkcs11:token=tf-device;object=identity;id=%01;type=private")
    key = TokenKey(uri=uri, module=Path("/m.so"), conf=Path("/c"), token="tf-device",
                   label="identity", pin="1234")  # fmt: skip
    fresh = next_key(key)
    assert (fresh.label, fresh.uri.object, fresh.uri.id) == ("identity.next", "identity.next", None)
    assert (fresh.token, fresh.pin, fresh.uri.token) == ("tf-device", "1234", "tf-device")


def test_the_pending_certificate_sits_next_to_the_ldevid(tmp_path: Path) -> None:
    assert pending_path(_settings(tmp_path)) == tmp_path / "ldevid.next.pem"


def test_the_ldevid_matches_the_idevid_key_until_a_rekey_records_another(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    factory, rekeyed = _facts(b"\x30\x01\x01"), _facts(b"\x30\x01\x02")
    assert key_matches(settings, ldevid=factory, idevid=factory)
    assert not key_matches(settings, ldevid=rekeyed, idevid=factory)
    record = {"spki_sha256": hashlib.sha256(rekeyed.spki).hexdigest()}
    (tmp_path / KEY_STATE_FILE).write_text(json.dumps(record))
    assert key_matches(settings, ldevid=rekeyed, idevid=factory)
    assert not key_matches(settings, ldevid=factory, idevid=factory)
    (tmp_path / KEY_STATE_FILE).write_text("{damaged")
    assert key_matches(settings, ldevid=factory, idevid=factory)


class _Host:
    def __init__(self, directory: Path) -> None:
        self.settings = _settings(directory)
        self.dropped = 0

    def _drop_link(self) -> None:
        self.dropped += 1


@pytest.mark.parametrize("args", [{"rekey": "yes"}, {"rekey": 1}, {"rekey": None}],
                         ids=["text", "number", "null"])  # fmt: skip
def test_a_malformed_rekey_argument_is_answered_not_ok_and_touches_nothing(
    tmp_path: Path, args: dict[str, object]
) -> None:
    host = _Host(tmp_path)
    answer = answer_reenroll(host, Command(id="c1", name="reenroll", args=args))  # type: ignore[arg-type]
    assert answer["ok"] is False and answer["result"]["code"] == "agent.reenroll.args"
    assert host.dropped == 0


@pytest.mark.parametrize(
    "target", [{}, {"device_id": "dev-x", "fleet": True}, {"model": "m", "fleet": True}],
    ids=["none", "device-and-fleet", "model-and-fleet"],
)  # fmt: skip
def test_a_request_names_exactly_one_target(target: dict[str, object]) -> None:
    with pytest.raises(InvalidInput) as refused:
        select_devices(None, **target)  # type: ignore[arg-type]
    assert refused.value.code == "rekey.select"
