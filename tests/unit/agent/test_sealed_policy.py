"""The pure parts of sealed storage and measured boot: the PCR policy the key is sealed to."""

from __future__ import annotations

import hashlib
import json

import pytest

from trustfleet import __version__
from trustfleet.agent.platform import measured_boot as device_tpm
from trustfleet.agent.sealed import boot_pcr_values, release_image_sha256
from trustfleet.attestation import replay
from trustfleet.attestation.eventlog import EventLogEntry
from trustfleet.keystore.tpm import pcr_policy_digest
from trustfleet.services import _attestation_policy as service

IMAGE = hashlib.sha256(b"image 1.0.0").digest()


def test_identities_are_the_services_reference_identities() -> None:
    assert device_tpm.ROM_IDENTITY == service.SIM_ROM_IDENTITY
    assert device_tpm.BOOTLOADER_IDENTITY == service.SIM_BOOTLOADER_IDENTITY
    assert device_tpm.AGENT_IDENTITY == service.SIM_AGENT_IDENTITY


def test_boot_events_are_the_reference_digests() -> None:
    events = device_tpm.boot_events(model="m-1", image_sha256=IMAGE)
    reference = service.model_reference("m-1")
    assert [pcr for pcr, _ in events] == [0, 4, 9, 10]
    assert events[0][1] in reference.rom
    assert events[1][1] in reference.bootloader
    assert events[2][1] == IMAGE
    assert events[3][1] in reference.agent


def test_policy_values_are_what_the_verifier_replays() -> None:
    events = device_tpm.boot_events(model="m-1", image_sha256=IMAGE)
    log = [EventLogEntry(pcr, "EV_IPL", digest, "x") for pcr, digest in events]
    assert boot_pcr_values(model="m-1", image_sha256=IMAGE) == replay(log, pcrs=(0, 4, 9, 10))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"model": "m-1", "image_sha256": IMAGE}, {"model": "m-2", "image_sha256": IMAGE}),
        (
            {"model": "m-1", "image_sha256": IMAGE},
            {"model": "m-1", "image_sha256": hashlib.sha256(b"other").digest()},
        ),
        (
            {"model": "m-1", "image_sha256": IMAGE},
            {"model": "m-1", "image_sha256": IMAGE, "agent_version": __version__ + ".post1"},
        ),
    ],
    ids=["other-model", "other-image", "other-agent"],
)
def test_any_other_boot_has_another_policy(a: dict[str, object], b: dict[str, object]) -> None:
    assert pcr_policy_digest(boot_pcr_values(**a)) != pcr_policy_digest(boot_pcr_values(**b))  # type: ignore[arg-type]


MANIFESTS = {
    "good": (json.dumps({"image": {"sha256": IMAGE.hex()}}).encode(), IMAGE),
    "not-json": (b"{", None),
    "no-image": (b"{}", None),
    "short-digest": (json.dumps({"image": {"sha256": "ab"}}).encode(), None),
    "not-hex": (json.dumps({"image": {"sha256": "zz" * 32}}).encode(), None),
    "image-not-object": (json.dumps({"image": 3}).encode(), None),
}


@pytest.mark.parametrize(("data", "expected"), MANIFESTS.values(), ids=MANIFESTS.keys())
def test_release_image_digest(data: bytes, expected: bytes | None) -> None:
    assert release_image_sha256(data) == expected


def test_only_boot_chain_pcrs_are_quoted() -> None:
    assert device_tpm.quoted_pcrs([23, 10, 7, 0, 0, 4]) == [0, 4, 10]
    assert device_tpm.quoted_pcrs([1, 2, 3]) == []
