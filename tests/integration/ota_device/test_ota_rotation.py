"""Devices follow the repository's key rotations (issue #4 §1): a device whose trusted root is
the factory's root v1 walks the chain of new roots (root-key rotation, then online-key rotation)
and still installs a release afterwards. Runs last in this folder: it rotates the shared
repository's keys, which every later device would have to follow too.
"""

from __future__ import annotations

import json

from otadevkit import OtaFleet, update


def _root_version(device_or_home_file: object) -> int:
    return int(json.loads(device_or_home_file.read_text())["signed"]["version"])  # type: ignore[attr-defined]


def test_a_device_follows_root_and_online_key_rotation(ota_fleet: OtaFleet) -> None:
    server = ota_fleet.server
    device = ota_fleet.device()
    assert _root_version(device / "tuf" / "metadata" / "root.json") == 1
    before = json.loads(server.cli("ota", "status", "--json").stdout)
    rotated = server.cli("ota", "rotate-root", "--json")
    assert rotated.returncode == 0, rotated.stderr
    online = server.cli("ota", "rotate-online", "--json")
    assert online.returncode == 0, online.stderr
    after = json.loads(server.cli("ota", "status", "--json").stdout)
    assert after != before
    newest = max(
        int(p.name.split(".")[0])
        for p in (server.home / "ota" / "repo" / "metadata").glob("*.root.json")
    )
    assert newest >= 3

    code, doc = update(device, "2.0.0")

    assert (code, doc.get("outcome"), doc.get("firmware_version")) == (0, "committed", "2.0.0"), doc
    assert _root_version(device / "tuf" / "metadata" / "root.json") == newest
