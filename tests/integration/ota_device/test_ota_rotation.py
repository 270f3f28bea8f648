"""Devices follow the repository's key rotations (issue #4 §1): a device whose trusted root is
the factory's root v1 walks the chain of new roots (root-key rotation, then online-key rotation)
and still installs a release afterwards. Runs last in this folder: it rotates the shared
repository's keys, which every later device would have to follow too.

Both rotations are ceremonies with the offline folder (issue 14 §1) and two of the three
custodians: tf-tuf-root-2's custodian is absent from the root rotation, so its key stays in
the new root while the other two are replaced (TUF specification §5.3.4).
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
    assert server.sim is not None
    two = server.sim.ceremony_args(["tf-tuf-root-1", "tf-tuf-root-3"])
    rotated = server.cli("ota", "rotate-root", *two, "--json")
    assert rotated.returncode == 0, rotated.stderr
    old_keys = set(before["roles"]["root"]["keyids"])
    new_keys = set(json.loads(rotated.stdout)["roles"]["root"]["keyids"])
    assert len(new_keys) == 3 and len(new_keys & old_keys) == 1  # the absent custodian's key
    others = server.sim.ceremony_args(["tf-tuf-root-2", "tf-tuf-root-3"])
    online = server.cli("ota", "rotate-online", *others, "--json")
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
