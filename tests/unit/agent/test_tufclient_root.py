"""Installing the initial trusted root, and a client without one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Role, Root
from tuf.api.serialization.json import JSONSerializer

from trustfleet.agent.updater.tufclient import TufClient, init_trusted_root
from trustfleet.errors import Config, Conflict, InvalidInput


def _root(*, signed: bool = True, version: int = 1) -> bytes:
    signer = CryptoSigner.generate_ecdsa()
    root = Root(version=version, expires=datetime.now(UTC) + timedelta(days=1))
    for role in ("root", "timestamp", "snapshot", "targets"):
        root.roles[role] = Role([], threshold=1)
        root.add_key(signer.public_key, role)
    md = Metadata(root)
    if signed:
        md.sign(signer)
    return md.to_bytes(JSONSerializer())


def test_installs_a_self_signed_root_once(tmp_path: Path) -> None:
    root = _root()
    init_trusted_root(tmp_path / "md", root)
    assert (tmp_path / "md" / "root.json").read_bytes() == root
    init_trusted_root(tmp_path / "md", root)  # the same root again: nothing to do
    with pytest.raises(Conflict) as caught:
        init_trusted_root(tmp_path / "md", _root())
    assert caught.value.code == "ota.tuf.root_exists"
    assert (tmp_path / "md" / "root.json").read_bytes() == root


BAD = {
    "unsigned": _root(signed=False),
    "not-json": b"\x00garbage",
    "a-timestamp": b'{"signed": {"_type": "timestamp"}, "signatures": []}',
}


@pytest.mark.parametrize("data", BAD.values(), ids=BAD.keys())
def test_refuses_what_is_not_a_self_signed_root(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(InvalidInput) as caught:
        init_trusted_root(tmp_path / "md", data)
    assert caught.value.code == "ota.tuf.root_invalid"
    assert not (tmp_path / "md").exists()


def test_refuses_an_oversized_root(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="more than 100"):
        init_trusted_root(tmp_path / "md", _root(), max_root_bytes=100)


def test_a_client_needs_a_trusted_root(tmp_path: Path) -> None:
    with pytest.raises(Config) as caught:
        TufClient(
            metadata_dir=tmp_path, metadata_url="http://127.0.0.1:9/m",
            targets_url="http://127.0.0.1:9/t", download_dir=tmp_path / "dl",
        )  # fmt: skip
    assert caught.value.code == "ota.tuf.no_root"
